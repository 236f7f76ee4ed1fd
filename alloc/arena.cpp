#include "alloc/arena.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace fp {
namespace {

std::byte* map_hugetlb(std::size_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
    if (p == MAP_FAILED)
        throw std::system_error(errno, std::generic_category(),
                                "arena: mmap of " + std::to_string(size >> 20) +
                                    " MiB with MAP_HUGETLB (2 MiB pages) failed; reserve pages in "
                                    "/proc/sys/vm/nr_hugepages or disable memory.hugetlb");
    return static_cast<std::byte*>(p);
}

// Over-map by one alignment unit, then trim the head and tail so the base is 2 MiB aligned.
std::byte* map_aligned(std::size_t size) {
    const std::size_t span = size + Arena::kAlign;
    void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        throw std::system_error(errno, std::generic_category(),
                                "arena: mmap of " + std::to_string(size >> 20) + " MiB failed");
    auto* base = static_cast<std::byte*>(p);
    const std::size_t skew = reinterpret_cast<std::uintptr_t>(p) & (Arena::kAlign - 1);
    const std::size_t head = skew ? Arena::kAlign - skew : 0;
    std::byte* aligned = base + head;
    if (head) ::munmap(base, head);
    const std::size_t tail = span - head - size;
    if (tail) ::munmap(aligned + size, tail);
    // THP is "madvise" on this kind of machine: ask for it. EINVAL (no THP) is not an error.
    ::madvise(aligned, size, MADV_HUGEPAGE);
    return aligned;
}

}  // namespace

Arena::Arena(std::size_t size, bool hugetlb) : size_(size) {
    if (size == 0 || size % kAlign != 0)
        throw std::invalid_argument("arena: size " + std::to_string(size) +
                                    " is not a non-zero multiple of 2 MiB");
    base_ = hugetlb ? map_hugetlb(size) : map_aligned(size);
}

Arena::~Arena() {
    if (base_) ::munmap(base_, size_);
}

Arena::Arena(Arena&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Arena& Arena::operator=(Arena&& other) noexcept {
    if (this != &other) {
        if (base_) ::munmap(base_, size_);
        base_ = std::exchange(other.base_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

}  // namespace fp
