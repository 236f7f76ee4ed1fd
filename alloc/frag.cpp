#include "alloc/frag.hpp"

#include "alloc/check.hpp"
#include "alloc/frag_debug.hpp"
#include "alloc/poison.hpp"

namespace fp {

void page_release(PagePool& pool, Page& page) noexcept {
    std::byte* va = pool.address(&page);
    frag_debug::forget_page(va, PagePool::page_bytes(page));
    poison(va, PagePool::page_bytes(page));
    pool.release(&page);
}

void frag_free(PagePool& pool, void* frag) noexcept {
    Page* page = pool.page_of(frag);
    FP_CHECK(page && page->state == PageState::kInUse,
             "frag_free(%p): not a fragment of a page in use", frag);
    poison(frag, frag_debug::untrack(frag));
    if (page_ref_sub_and_test(*page, 1)) page_release(pool, *page);
}

void frag_free(void* frag) noexcept {
    PagePool* pool = PagePool::owner_of(frag);
    FP_CHECK(pool, "frag_free(%p): pointer is not from any fragment arena", frag);
    frag_free(*pool, frag);
}

void drain(PagePool& pool, Page& page, std::uint32_t count) noexcept {
    FP_CHECK(page.state == PageState::kInUse, "drain of a page that is not in use");
    if (count && page_ref_sub_and_test(page, count)) page_release(pool, page);
}

void drain(void* any_frag_in_page, std::uint32_t count) noexcept {
    PagePool* pool = PagePool::owner_of(any_frag_in_page);
    FP_CHECK(pool, "drain(%p): pointer is not from any fragment arena", any_frag_in_page);
    drain(*pool, *pool->page_of(any_frag_in_page), count);
}

}  // namespace fp
