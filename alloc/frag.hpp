#pragma once
// Freeing fragments and draining pages: the counterparts of the kernel's page_frag_free() and
// __page_frag_cache_drain(). Any thread may call these; the page returns to its pool when its
// count reaches zero (to the owner's remote list when freed off the owner thread).
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "alloc/page_pool.hpp"

namespace fp {

// One atomic decrement on the fragment's page. A pointer from no arena is a checked error.
void frag_free(void* frag) noexcept;
void frag_free(PagePool& pool, void* frag) noexcept;  // the pool is known: no registry lookup

// Drops `count` references to `page` in one atomic op: a connection that still holds several
// fragments of one page when it closes releases them with one call per page.
void drain(PagePool& pool, Page& page, std::uint32_t count) noexcept;
void drain(void* any_frag_in_page, std::uint32_t count) noexcept;

// The page's count reached zero: back to its pool (debug bookkeeping and poisoning first).
void page_release(PagePool& pool, Page& page) noexcept;

// Owns one fragment; frees it on destruction. Move-only.
class FragRef {
  public:
    FragRef() noexcept = default;
    FragRef(void* frag, std::size_t size) noexcept : p_(static_cast<std::byte*>(frag)), n_(size) {}
    ~FragRef() { reset(); }
    FragRef(FragRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    FragRef& operator=(FragRef&& o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
            n_ = std::exchange(o.n_, 0);
        }
        return *this;
    }
    FragRef(const FragRef&) = delete;
    FragRef& operator=(const FragRef&) = delete;

    std::byte* data() const noexcept { return p_; }
    std::size_t size() const noexcept { return n_; }
    std::span<std::byte> bytes() const noexcept { return {p_, n_}; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    // Gives up ownership without freeing (e.g. to hand the fragment to io_uring).
    std::byte* release() noexcept {
        n_ = 0;
        return std::exchange(p_, nullptr);
    }
    void reset() noexcept {
        if (p_) frag_free(std::exchange(p_, nullptr));
        n_ = 0;
    }

  private:
    std::byte* p_ = nullptr;
    std::size_t n_ = 0;
};

}  // namespace fp
