#pragma once
// Arena: the one mapping a PagePool carves its pages from. 2 MiB aligned so transparent huge pages
// can back it (MADV_HUGEPAGE), or explicit 2 MiB hugetlb pages when asked. Owning and move-only;
// unmapped on destruction. Construction failures throw std::system_error (startup path).
#include <cstddef>

namespace fp {

class Arena {
  public:
    static constexpr std::size_t kAlign = std::size_t{2} << 20;  // 2 MiB, one huge page

    // size must be a non-zero multiple of kAlign.
    explicit Arena(std::size_t size, bool hugetlb = false);
    ~Arena();
    Arena(Arena&& other) noexcept;
    Arena& operator=(Arena&& other) noexcept;
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    std::byte* base() const noexcept { return base_; }
    std::size_t size() const noexcept { return size_; }
    bool contains(const void* p) const noexcept {
        auto* b = static_cast<const std::byte*>(p);
        return b >= base_ && b < base_ + size_;
    }

  private:
    std::byte* base_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace fp
