#include "alloc/page_pool.hpp"

#include <stdexcept>
#include <string>

#include "alloc/check.hpp"
#include "alloc/pool_registry.hpp"

namespace fp {

bool page_ref_sub_and_test(Page& page, std::uint32_t n) noexcept {
    std::uint32_t old = page.refs.fetch_sub(n, std::memory_order_acq_rel);
    FP_CHECK(old >= n,
             "page refcount underflow (%u - %u): a fragment freed twice or drained too much", old,
             n);
    return old == n;
}

void PagePool::FreeList::push(Page* p) noexcept {
    p->prev = nullptr;
    p->next = head;
    if (head) head->prev = p;
    head = p;
}

Page* PagePool::FreeList::pop() noexcept {
    Page* p = head;
    if (p) remove(p);
    return p;
}

void PagePool::FreeList::remove(Page* p) noexcept {
    if (p->prev)
        p->prev->next = p->next;
    else
        head = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = nullptr;
}

namespace {

std::size_t resolve_reserve(const PoolConfig& c, std::size_t block) {
    std::size_t r = c.reserve_bytes ? c.reserve_bytes : c.arena_bytes / 16;
    return (r + block - 1) / block;  // whole blocks, at least one
}

}  // namespace

PagePool::PagePool(const PoolConfig& c, Owner owner)
    : arena_((c.order > kMaxOrder
                  ? throw std::invalid_argument("memory.page_order " + std::to_string(c.order) +
                                                " is out of range 0..9")
                  : c.arena_bytes),
             c.hugetlb),
      order_(c.order),
      nblocks_(arena_.size() >> (kBaseShift + order_)),
      soft_blocks_(nblocks_ - resolve_reserve(c, block_bytes())),
      pages_(arena_.size() >> kBaseShift),
      blocks_(nblocks_) {
    if (resolve_reserve(c, block_bytes()) >= nblocks_)
        throw std::invalid_argument("memory: the reserve (" + std::to_string(c.reserve_bytes) +
                                    " bytes) leaves no normal pages in a " +
                                    std::to_string(arena_.size() >> 20) + " MiB arena");
    if (owner == Owner::kCurrentThread) bind_to_current_thread();
    normal_.fresh = 0;  // blocks are handed out from the lowest address up
    normal_.end = soft_blocks_;
    reserve_.fresh = soft_blocks_;
    reserve_.end = nblocks_;
    memalloc_units_ = (reserve_blocks() + 3) / 4 << order_;
    registry_add(this, arena_.base(), arena_.size());
}

PagePool::~PagePool() {
    registry_remove(this);
}

PagePool* PagePool::owner_of(const void* p) noexcept {
    return registry_find(p);
}

Page* PagePool::page_of(const void* p) noexcept {
    if (!arena_.contains(p)) return nullptr;
    std::size_t unit =
        static_cast<std::size_t>(static_cast<const std::byte*>(p) - arena_.base()) >> kBaseShift;
    std::size_t block = unit >> order_;
    if (!blocks_[block].split.load(std::memory_order_relaxed)) unit = block << order_;
    return &pages_[unit];
}

Page* PagePool::alloc(unsigned order, Depth depth) noexcept {
    FP_CHECK(order == order_ || order == 0, "page order %u requested from an order-%u pool", order,
             order_);
    if (FP_UNLIKELY(inject_failures_ > 0)) {
        --inject_failures_;
        return nullptr;
    }
    const std::size_t units = std::size_t{1} << order;
    if (depth == Depth::kReserve) {  // the reserve's last quarter stays for kMemalloc
        reclaim();
        const std::size_t free_units = (reserve_blocks() << order_) - reserve_used_units_;
        if (free_units < memalloc_units_ + units) return nullptr;
    }
    Zone& zone = depth == Depth::kNormal ? normal_ : reserve_;
    Page* p = take(zone, order);
    if (!p && reclaim()) p = take(zone, order);
    if (!p) return nullptr;
    p->state = PageState::kInUse;
    ++in_use_;
    (p->reserve ? reserve_used_units_ : normal_used_units_) += units;
    return p;
}

std::size_t PagePool::descriptor_bytes(std::size_t arena_bytes, unsigned order) noexcept {
    return (arena_bytes >> kBaseShift) * sizeof(Page) +
           (arena_bytes >> (kBaseShift + order)) * sizeof(Block);
}

// A free block of the zone, or its next never-used block, whose descriptors are made here.
Page* PagePool::pop_block(Zone& zone) noexcept {
    if (Page* p = zone.blocks.pop()) return p;
    if (zone.fresh == zone.end) return nullptr;
    std::size_t b = zone.fresh++;
    new (&blocks_[b]) Block{};
    const std::size_t first = b << order_;
    for (std::size_t u = first; u < first + (std::size_t{1} << order_); ++u)
        new (&pages_[u]) Page{};
    Page* head = &pages_[first];
    head->order = static_cast<std::uint8_t>(order_);
    head->reserve = &zone == &reserve_;
    return head;
}

Page* PagePool::take(Zone& zone, unsigned order) noexcept {
    if (order == order_) return pop_block(zone);
    if (Page* p = zone.small.pop()) {
        --blocks_[unit_of(p) >> order_].free_small;
        return p;
    }
    return split(zone);
}

// Breaks a free block into 2^order base pages: returns the first, queues the rest.
Page* PagePool::split(Zone& zone) noexcept {
    Page* head = pop_block(zone);
    if (!head) return nullptr;
    std::size_t first = unit_of(head);
    std::size_t n = std::size_t{1} << order_;
    for (std::size_t u = first; u < first + n; ++u) {
        pages_[u].order = 0;
        pages_[u].reserve = head->reserve;
        if (u != first) zone.small.push(&pages_[u]);
    }
    Block& b = blocks_[first >> order_];
    b.free_small = static_cast<std::uint16_t>(n - 1);
    b.split.store(true, std::memory_order_relaxed);
    return head;
}

void PagePool::free_page(Page* p) noexcept {
    FP_CHECK(p->state == PageState::kInUse, "page %p freed twice", static_cast<void*>(address(p)));
    p->state = PageState::kFree;
    --in_use_;
    (p->reserve ? reserve_used_units_ : normal_used_units_) -= std::size_t{1} << p->order;
    Zone& zone = zone_of(*p);
    if (p->order == order_) {
        zone.blocks.push(p);
        return;
    }
    zone.small.push(p);
    std::size_t first = unit_of(p) >> order_ << order_;
    std::size_t n = std::size_t{1} << order_;
    Block& b = blocks_[first >> order_];
    if (++b.free_small < n) return;
    for (std::size_t u = first; u < first + n; ++u)
        zone.small.remove(&pages_[u]);  // merge
    b.free_small = 0;
    b.split.store(false, std::memory_order_relaxed);
    pages_[first].order = static_cast<std::uint8_t>(order_);
    zone.blocks.push(&pages_[first]);
}

void PagePool::release(Page* p) noexcept {
    if (std::this_thread::get_id() == owner_) {
        free_page(p);
        return;
    }
    Page* head = remote_.load(std::memory_order_relaxed);
    do {
        p->next = head;
    } while (!remote_.compare_exchange_weak(head, p, std::memory_order_release,
                                            std::memory_order_relaxed));
}

bool PagePool::reclaim() noexcept {
    // A plain load first: the worker asks after every batch (free_normal_bytes), and most of the
    // time nothing came back from other threads.
    if (!remote_.load(std::memory_order_relaxed)) return false;
    Page* p = remote_.exchange(nullptr, std::memory_order_acquire);
    if (!p) return false;
    while (p) {
        Page* next = p->next;
        free_page(p);
        p = next;
    }
    return true;
}

std::size_t PagePool::free_normal_bytes() noexcept {
    reclaim();
    return normal_bytes() - (normal_used_units_ << kBaseShift);
}

std::size_t PagePool::pages_in_use() noexcept {
    reclaim();
    return in_use_;
}

}  // namespace fp
