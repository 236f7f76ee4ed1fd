#include "net/recv_pages.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "alloc/check.hpp"
#include "alloc/frag.hpp"
#include "alloc/frag_debug.hpp"
#include "alloc/poison.hpp"
#include "net/uapi.hpp"

namespace fp::net {

RecvPages::RecvPages(Ring& ring, PagePool& pool, unsigned entries, std::uint16_t group,
                     bool incremental)
    : ring_(ring), pool_(pool), entries_(entries), group_(group), slots_(entries) {
    FP_CHECK(entries && !(entries & (entries - 1)) && entries <= 32768,
             "recv ring entries must be a power of two up to 32768");
    br_bytes_ = entries * sizeof(io_uring_buf);
    void* mem =
        ::mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        throw std::system_error(errno, std::generic_category(), "recv ring mmap");
    br_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
    reg.ring_entries = entries;
    reg.bgid = group;
    reg.pad = incremental ? uapi::kPbufRingInc : 0;
    int rc = io_uring_register_buf_ring(ring_.get(), &reg, 0);
    if (rc < 0) {
        ::munmap(br_, br_bytes_);
        throw std::system_error(-rc, std::generic_category(),
                                "registering the provided-buffer ring with incremental consumption "
                                "(IOU_PBUF_RING_INC needs Linux 6.12)");
    }
    empty_.reserve(entries);
    for (unsigned i = entries; i-- > 0;)
        empty_.push_back(static_cast<std::uint16_t>(i));
    replenish();
}

RecvPages::~RecvPages() {
    drain();
    io_uring_unregister_buf_ring(ring_.get(), group_);
    ::munmap(br_, br_bytes_);
}

void RecvPages::offer(std::uint16_t bid, Page* page) noexcept {
    Slot& s = slots_[bid];
    s = {page, pool_.address(page), static_cast<std::uint32_t>(PagePool::page_bytes(*page)), 0, 0};
    s.bias = s.size + 1;
    page->refs.store(s.bias, std::memory_order_relaxed);
    page->held = 1;  // in the ring: owner frees go to the slot's bias (found by address below)
    frag_debug::forget_page(s.va, s.size);
    poison(s.va, s.size);
    io_uring_buf_ring_add(br_, s.va, s.size, bid, io_uring_buf_ring_mask(entries_), 0);
    io_uring_buf_ring_advance(br_, 1);
}

// The normal zone first; when it is empty, the reserve (the kernel's pfmemalloc rule): queues
// held for slow peers are bounded well below the normal zone (memory_budget.hpp), so the reserve
// is what keeps receives possible for everyone else when they are not.
Page* RecvPages::fresh_page() noexcept {
    Page* page = pool_.alloc(pool_.order(), false);
    return page ? page : pool_.alloc(pool_.order(), true);
}

unsigned RecvPages::replenish() noexcept {
    while (!empty_.empty()) {
        Page* page = fresh_page();
        if (!page) break;
        std::uint16_t bid = empty_.back();
        empty_.pop_back();
        offer(bid, page);
    }
    return offered();
}

std::byte* RecvPages::take(std::uint16_t bid, std::uint32_t len, bool more) noexcept {
    FP_CHECK(bid < entries_ && slots_[bid].page, "completion for empty recv buffer %u", bid);
    Slot& s = slots_[bid];
    FP_CHECK(s.offset + len <= s.size, "recv buffer %u overrun", bid);
    std::byte* frag = s.va + s.offset;
    s.offset += len;
    --s.bias;
    unpoison(frag, len);
    frag_debug::track(frag, len);
    if (!more) eject(bid);
    return frag;
}

// The kernel is done with the buffer: reconcile, then reuse the page in place or take a new one.
void RecvPages::eject(std::uint16_t bid) noexcept {
    Slot s = slots_[bid];
    s.page->held = 0;
    slots_[bid] = Slot{};
    if (page_ref_sub_and_test(*s.page, s.bias)) {
        if (!s.page->reserve) return offer(bid, s.page);  // reused in place
        page_release(pool_, *s.page);                     // a reserve page goes back at once
    }
    if (Page* page = fresh_page()) return offer(bid, page);
    empty_.push_back(bid);
}

// Pages in the ring are few (memory.recv_pages); the held flag keeps the scan off the common path
// of pages that have left it.
RecvPages::Slot* RecvPages::slot_of(const Page* page) noexcept {
    if (!page || !page->held) return nullptr;
    for (Slot& s : slots_)
        if (s.page == page) return &s;
    return nullptr;
}

void RecvPages::free(std::byte* frag) noexcept {
    Slot* s = slot_of(pool_.page_of(frag));
    if (!s) return frag_free(pool_, frag);
    poison(frag, frag_debug::untrack(frag));
    ++s->bias;
}

void RecvPages::free_run(std::byte* any_frag, std::uint32_t count) noexcept {
    Page* page = pool_.page_of(any_frag);
    if (Slot* s = slot_of(page))
        s->bias += count;
    else
        fp::drain(pool_, *page, count);
}

void RecvPages::drain() noexcept {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        Slot& s = slots_[i];
        if (!s.page) continue;
        s.page->held = 0;
        if (page_ref_sub_and_test(*s.page, s.bias)) page_release(pool_, *s.page);
        s = Slot{};
        empty_.push_back(static_cast<std::uint16_t>(i));
    }
}

}  // namespace fp::net
