#include "net/engine/recv_pages.hpp"

#include <sys/mman.h>

#include <bit>
#include <cerrno>
#include <string>
#include <system_error>

#include "alloc/check.hpp"
#include "net/engine/uapi.hpp"

namespace fp::net {
namespace {

const char* needs(RecvMode mode) {
    return mode == RecvMode::kIncremental
               ? "registering the provided-buffer ring with incremental consumption "
                 "(IOU_PBUF_RING_INC needs Linux 6.12)"
               : "registering a provided-buffer ring (Linux 5.19)";
}

}  // namespace

RecvPages::RecvPages(Ring& ring, PagePool& pool, unsigned pages, std::uint16_t group, RecvMode mode,
                     std::uint32_t fragment)
    : ring_(ring), mode_(mode), group_(group) {
    const std::size_t page = pool.block_bytes();
    const bool frags = mode == RecvMode::kFragments;
    FP_CHECK(pages && (!frags || (fragment && fragment <= page)),
             "recv ring of %u pages (fragments of %u bytes)", pages, fragment);
    entries_ = std::bit_ceil(frags ? unsigned(pages * (page / fragment)) : pages);
    FP_CHECK(entries_ <= 32768, "recv ring of %u buffers: at most 32768", entries_);
    buffer_bytes_ = frags ? fragment : std::uint32_t(page);
    pos_.assign(entries_, 0);
    order_.assign(entries_, 0);
    if (frags)
        frags_ = std::make_unique<LentFrags>(pool, entries_, fragment);
    else
        pages_ = std::make_unique<LentPages>(pool, entries_);
    br_bytes_ = entries_ * sizeof(io_uring_buf);
    void* mem =
        ::mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        throw std::system_error(errno, std::generic_category(), "recv ring mmap");
    br_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
    reg.ring_entries = entries_;
    reg.bgid = group;
    reg.pad = mode == RecvMode::kIncremental ? uapi::kPbufRingInc : 0;
    int rc = ring_.register_buf_ring(reg);
    if (rc < 0) {
        ::munmap(br_, br_bytes_);
        throw std::system_error(-rc, std::generic_category(), needs(mode));
    }
    replenish();
}

RecvPages::~RecvPages() {
    drain();
    ring_.unregister_buf_ring(group_);
    ::munmap(br_, br_bytes_);
}

void RecvPages::offer(std::uint16_t bid) noexcept {
    auto bytes = frags_ ? frags_->bytes(bid) : pages_->bytes(bid);
    pos_[bid] = br_->tail;
    order_[br_->tail & (entries_ - 1)] = bid;
    io_uring_buf_ring_add(br_, bytes.data(), unsigned(bytes.size()), bid,
                          io_uring_buf_ring_mask(entries_), 0);
    io_uring_buf_ring_advance(br_, 1);
}

unsigned RecvPages::replenish() noexcept {
    if (frags_) {
        while (auto bid = frags_->refill())
            offer(*bid);
    } else {
        while (auto bid = pages_->refill())
            offer(*bid);
    }
    return offered();
}

std::byte* RecvPages::take(std::uint16_t bid, std::uint32_t len, bool more) noexcept {
    if (frags_) {  // a short receive's tail is offered again, else the slot is carved again
        std::byte* frag = frags_->take(bid, len);
        if (frags_->lent_at(bid))
            offer(bid);
        else if (auto again = frags_->refill())
            offer(*again);
        return frag;
    }
    std::byte* frag = pages_->take(bid, len);
    if (!more && pages_->eject(bid)) offer(bid);
    return frag;
}

void RecvPages::drain() noexcept {
    if (frags_)
        frags_->drain();
    else
        pages_->drain();
}

}  // namespace fp::net
