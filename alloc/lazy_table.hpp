#pragma once
// LazyTable<T>: a fixed-size table of T in an anonymous mapping reserved up front and touched only
// where it is used: the kernel maps a zero page on first access, so a table sized for a 64 GiB
// arena costs nothing until its entries are constructed (PagePool constructs a block's descriptors
// when it first hands the block out). Move-only RAII over the mapping.
#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <system_error>
#include <utility>

namespace fp {

template <class T>
class LazyTable {
  public:
    LazyTable() = default;
    explicit LazyTable(std::size_t n) : bytes_(n * sizeof(T)) {
        if (!bytes_) return;
        void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            throw std::system_error(
                errno, std::generic_category(),
                "mmap of a " + std::to_string(bytes_ >> 10) + " KiB descriptor table");
        data_ = static_cast<T*>(p);
    }
    ~LazyTable() {
        if (data_) ::munmap(data_, bytes_);
    }
    LazyTable(LazyTable&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    LazyTable& operator=(LazyTable&& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(bytes_, o.bytes_);
        return *this;
    }
    LazyTable(const LazyTable&) = delete;
    LazyTable& operator=(const LazyTable&) = delete;

    T* get() const noexcept { return data_; }
    T& operator[](std::size_t i) const noexcept { return data_[i]; }

  private:
    T* data_ = nullptr;
    std::size_t bytes_ = 0;
};

}  // namespace fp
