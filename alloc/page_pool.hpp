#pragma once
// PagePool: hands out compound pages of one configured order from an Arena, like the page
// allocator under the kernel's page_frag cache.
//
// - Two zones: the normal zone, and past the soft limit a reserve zone. A page from the reserve is
//   flagged (the kernel's pfmemalloc): a FragCache returns it when its fragments are gone and never
//   reuses it in place, so the reserve refills as soon as pressure drops.
// - Three depths an allocation may dig to (the kernel's watermarks): kNormal, the normal zone;
//   kReserve, the reserve too, except its last quarter (at least one block); kMemalloc, all of it.
//   The last quarter is for the allocations that give memory back (the kernel's PF_MEMALLOC:
//   the reclaimer itself): copying stuck fragments that pin whole pages into compact ones needs a
//   page to copy into, and receives that took every page would otherwise leave it none.
// - Order fallback: pages come in the configured order, or order 0 when asked; an order-0 request
//   splits a free block into 2^order base pages, and the block merges back once all are free.
//   FragCache asks for order 0 when the high order has run out, as the kernel's refill does.
// - One owner thread (normally the worker's) allocates and frees. A page whose last reference drops
//   on another thread goes onto a lock-free stack the owner takes back in reclaim() (Seastar's
//   foreign-free list); a pool made with Owner::kShared returns every page that way and its user
//   serialises alloc() itself (SharedFragCache does, under its mutex).
// - Every live pool is in a small global registry, so frag_free(ptr) finds a pointer's pool.
// - Nothing is touched before it is used: the descriptor tables are lazy mappings (LazyTable) and
//   a block's descriptors are constructed when the block is first handed out (each zone keeps a
//   cursor of blocks never used), so a 64 GiB arena costs no memory until traffic needs it.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

#include "alloc/arena.hpp"
#include "alloc/lazy_table.hpp"
#include "alloc/page.hpp"

namespace fp {

enum class Depth : std::uint8_t { kNormal, kReserve, kMemalloc };

struct PoolConfig {
    std::size_t arena_bytes = std::size_t{64} << 20;
    unsigned order = 4;             // 4 → 64 KiB pages
    std::size_t reserve_bytes = 0;  // past the soft limit; 0 → 1/16 of the arena, at least 1 page
    bool hugetlb = false;           // MAP_HUGETLB instead of transparent huge pages
};

class PagePool {
  public:
    enum class Owner { kCurrentThread, kShared };
    static constexpr unsigned kBaseShift = 12;
    static constexpr std::size_t kBasePage = std::size_t{1} << kBaseShift;
    static constexpr unsigned kMaxOrder = 9;  // 2 MiB, one huge page

    // Throws std::invalid_argument for a bad config, std::system_error if the mapping fails.
    explicit PagePool(const PoolConfig& config, Owner owner = Owner::kCurrentThread);
    ~PagePool();
    PagePool(const PagePool&) = delete;
    PagePool& operator=(const PagePool&) = delete;

    // A page of `order` (the pool's order or 0) from the normal zone (kNormal), or from the
    // reserve zone down to `depth`; null when that has none. Owner thread (or under the user's
    // lock).
    Page* alloc(unsigned order, Depth depth) noexcept;
    // Gives a page whose count reached zero back. Any thread.
    void release(Page* page) noexcept;
    // Takes back the pages other threads released; true if there were any. Owner only.
    bool reclaim() noexcept;

    Page* page_of(const void* p) noexcept;
    std::byte* address(const Page* page) const noexcept {
        return arena_.base() + (static_cast<std::size_t>(page - pages_.get()) << kBaseShift);
    }
    static std::size_t page_bytes(const Page& page) noexcept { return kBasePage << page.order; }

    unsigned order() const noexcept { return order_; }
    std::size_t block_bytes() const noexcept { return kBasePage << order_; }
    std::size_t blocks() const noexcept { return nblocks_; }
    std::size_t reserve_blocks() const noexcept { return nblocks_ - soft_blocks_; }
    // Blocks of the reserve only kMemalloc allocations may take.
    std::size_t memalloc_blocks() const noexcept { return memalloc_units_ >> order_; }
    const Arena& arena() const noexcept { return arena_; }
    // Pages handed out and not yet back (reclaims first, so owner only). Zero when all is free.
    std::size_t pages_in_use() noexcept;
    // Bytes of the normal zone not handed out (reclaims first, so owner only). What the worker's
    // memory-pressure levels are derived from; the reserve zone is not counted.
    std::size_t free_normal_bytes() noexcept;
    std::size_t normal_bytes() const noexcept { return soft_blocks_ * block_bytes(); }
    // Bytes of descriptors a pool over `arena_bytes` can touch at most (start-up memory checks).
    static std::size_t descriptor_bytes(std::size_t arena_bytes, unsigned order) noexcept;

    // Fault injection: the next n alloc() calls fail as if the zone were empty.
    void inject_failures(unsigned n) noexcept { inject_failures_ = n; }
    void bind_to_current_thread() noexcept { owner_ = std::this_thread::get_id(); }

    // The pool whose arena holds p, or null. Any thread.
    static PagePool* owner_of(const void* p) noexcept;

  private:
    struct FreeList {
        Page* head = nullptr;
        void push(Page* p) noexcept;
        Page* pop() noexcept;
        void remove(Page* p) noexcept;
    };
    struct Zone {
        FreeList blocks;    // whole blocks of the pool's order
        FreeList small;     // order-0 pages of split blocks
        std::size_t fresh;  // next block never handed out; the zone's blocks end at `end`
        std::size_t end;
    };
    struct Block {
        std::atomic<bool> split{false};  // read by page_of() on any thread
        std::uint16_t free_small = 0;
    };

    Zone& zone_of(const Page& p) noexcept { return p.reserve ? reserve_ : normal_; }
    std::size_t unit_of(const Page* p) const noexcept {
        return static_cast<std::size_t>(p - pages_.get());
    }
    Page* take(Zone& zone, unsigned order) noexcept;
    Page* pop_block(Zone& zone) noexcept;
    Page* split(Zone& zone) noexcept;
    void free_page(Page* page) noexcept;

    Arena arena_;
    unsigned order_;
    std::size_t nblocks_;
    std::size_t soft_blocks_;
    LazyTable<Page> pages_;    // one descriptor per 4 KiB unit
    LazyTable<Block> blocks_;  // one per block of the pool's order
    Zone normal_;
    Zone reserve_;
    std::size_t in_use_ = 0;
    std::size_t normal_used_units_ = 0;   // 4 KiB units of the normal zone handed out
    std::size_t reserve_used_units_ = 0;  // ... and of the reserve
    std::size_t memalloc_units_ = 0;      // units of the reserve kept for kMemalloc
    unsigned inject_failures_ = 0;
    std::thread::id owner_;
    std::atomic<Page*> remote_{nullptr};
};

}  // namespace fp
