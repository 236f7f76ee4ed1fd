#pragma once
// BiasedPage: the page_frag protocol for one page, in one place. Every holder of pages in
// fragproxy (FragCache, which picks the offsets itself, and LentPages, whose pages the kernel
// fills) keeps its pages through this type; nothing else writes a Page's count or held tag.
//
//   hold(page, tag)  the holder takes a page (a fresh one, or one it reuses) and tags it
//   charge()         one store: refs = bias = size + 1, more than the fragments the page can hold
//   carve()          a fragment is handed out: the local bias falls by one, no atomic op
//   split()          one fragment becomes two: one more reference, from the bias like carve()
//                    (split_unheld(): of a page no holder has, one atomic increment of its count)
//   give_back(n)     the holder's own frees (owner frees): the bias rises again, no atomic op
//   reconcile()      the holder lets go: one atomic sub_and_test of the bias; the page comes back
//                    when every fragment was already freed, for the caller to reuse or release
//
// Invariant, at every quiet moment: page.refs == live fragments of the page + bias.
// full() (bias == size + 1) means every fragment came back through owner frees: the page can be
// charged again in place without touching its count (charge(true)).
#include <cstddef>
#include <cstdint>

#include "alloc/check.hpp"
#include "alloc/frag.hpp"
#include "alloc/frag_debug.hpp"
#include "alloc/page_pool.hpp"
#include "alloc/poison.hpp"

namespace fp {

struct BiasedPage {
    Page* page = nullptr;
    std::byte* va = nullptr;
    std::uint32_t size = 0;
    std::uint32_t bias = 0;
    bool reserve =
        false;  // a copy of page->reserve: the holder's hot paths need not touch the Page

    // Takes `p` of `pool` for holding; `tag` (non-zero) goes into Page::held so that a free of
    // one of its fragments can tell the page is held, and by what.
    void hold(PagePool& pool, Page* p, std::uint8_t tag) noexcept {
        page = p;
        va = pool.address(p);
        size = static_cast<std::uint32_t>(PagePool::page_bytes(*p));
        bias = 0;
        reserve = p->reserve;
        p->held = tag;
    }
    // The page's fragments are all new from here: one plain store, the page is ours alone (fresh,
    // or every reference is back). refs_intact: every reference came back through owner frees, so
    // the count still holds the last charge and the Page is not touched at all.
    void charge(bool refs_intact = false) noexcept {
        frag_debug::forget_page(va, size);
        bias = size + 1;
        if (!refs_intact) page->refs.store(bias, std::memory_order_relaxed);
        FP_DCHECK(page->refs.load(std::memory_order_relaxed) == bias, "charge: refs %u, bias %u",
                  page->refs.load(std::memory_order_relaxed), bias);
        poison(va, size);
    }
    // A fragment of `len` bytes at `off` is handed out. The bias never reaches 0: a page holds at
    // most `size` fragments.
    std::byte* carve(std::uint32_t off, std::size_t len) noexcept {
        --bias;
        std::byte* p = va + off;
        unpoison(p, len);
        frag_debug::track(p, len);
        return p;
    }
    // The fragment of `len` bytes at `frag` becomes two, at `at`: the second is a reference of
    // its own, taken from the bias as carve() takes one (no atomic op). Returns the second.
    std::byte* split(std::byte* frag, std::uint32_t len, std::uint32_t at) noexcept {
        --bias;
        return retrack(frag, len, at);
    }
    // The same split of a fragment whose page no holder has any more (its bias was given back):
    // the new reference is one atomic increment of the page's count.
    static std::byte* split_unheld(Page& p, std::byte* frag, std::uint32_t len,
                                   std::uint32_t at) noexcept {
        p.refs.fetch_add(1, std::memory_order_relaxed);
        return retrack(frag, len, at);
    }
    // An owner free of one fragment (already untracked and poisoned), or of `n` at once.
    void give_back(std::uint32_t n = 1) noexcept { bias += n; }
    bool full() const noexcept { return bias == size + 1; }
    // Every reference is with the holder: back through owner frees, or the count fell to the
    // bias through frag_free() elsewhere (one acquire load).
    bool all_back() const noexcept {
        return full() || page->refs.load(std::memory_order_acquire) == bias;
    }
    bool contains(const std::byte* p) const noexcept { return page && p >= va && p < va + size; }
    // The holder lets go of the page: untagged, and the bias given back in one atomic op. The
    // page when that was its last reference (the caller reuses it: hold + charge, or releases
    // it), else null (its last fragment's free returns it to the pool).
    [[nodiscard]] Page* reconcile() noexcept {
        Page* p = page;
        std::uint32_t b = bias;
        p->held = 0;
        *this = BiasedPage{};
        return page_ref_sub_and_test(*p, b) ? p : nullptr;
    }
    // reconcile(), and the page back to the pool when that was its last reference.
    void release(PagePool& pool) noexcept {
        if (Page* p = reconcile()) page_release(pool, *p);
    }

  private:
    static std::byte* retrack(std::byte* frag, std::uint32_t len, std::uint32_t at) noexcept {
        FP_CHECK(at > 0 && at < len, "split of a %u-byte fragment at %u", len, at);
        frag_debug::untrack(frag);
        frag_debug::track(frag, at);
        frag_debug::track(frag + at, len - at);
        return frag + at;
    }
};

}  // namespace fp
