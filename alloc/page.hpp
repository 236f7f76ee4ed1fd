#pragma once
// Page: the descriptor of one compound page (2^order contiguous 4 KiB units of an arena). It lives
// outside the data, in its pool's descriptor table, so a page's bytes are all payload and any
// address inside it finds the descriptor in O(1) (PagePool::page_of).
//
// refs is the page's reference count, shared by every fragment carved from it and by the bias a
// FragCache holds (see frag_cache.hpp). Fragments may be freed from any thread, so it is atomic;
// everything else is touched only by the pool's owner.
#include <atomic>
#include <cstdint>

namespace fp {

enum class PageState : std::uint8_t { kFree, kInUse };

struct Page {
    std::atomic<std::uint32_t> refs{0};
    std::uint8_t order = 0;
    PageState state = PageState::kFree;
    bool reserve = false;  // taken past the soft limit: returned, never reused in place
    // Owner only: FragCache slot + 1 while a cache holds the page, or non-zero while the page is
    // in a worker's provided-buffer ring (net/engine/recv_pages.hpp).
    std::uint8_t held = 0;
    Page* prev = nullptr;  // pool free list (owner only)
    Page* next = nullptr;  // pool free list, or the remote-free stack while being returned
};

// Removes n references; true when that was the last one (the kernel's page_ref_sub_and_test).
// acq_rel: the thread that sees zero must observe every write made through the freed fragments.
bool page_ref_sub_and_test(Page& page, std::uint32_t n) noexcept;

}  // namespace fp
