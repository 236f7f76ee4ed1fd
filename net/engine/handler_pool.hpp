#pragma once
// HandlerPool: the memory of the epoll backend's Asio completion handlers, recycled. Asio
// allocates the operation object of every async_wait and post through the handler's associated
// allocator; by default that is a per-thread cache of two blocks, and with more than two waits
// completing in one turn the rest reached malloc (551 allocations per 512 MiB forwarded on one
// connection, measured by tests/integration/hot_path_test.py). Handlers bound to a PoolAllocator
// (asio::bind_allocator) take fixed-size blocks from this pool's free list instead, and give them
// back: the pool grows only to the most handlers ever outstanding at once, then no wait, timer or
// turn reaches the heap. A handler larger than a block (none of the backend's) goes to the heap.
//
// Owner thread only (the worker's io_context).
#include <cstddef>
#include <memory>
#include <vector>

namespace fp::net {

class HandlerPool {
  public:
    // Asio 1.22's reactive_wait_op, wait_handler and completion_handler for a four-word lambda
    // and the io_context's executor, with room.
    static constexpr std::size_t kBlockBytes = 256;

    void* get(std::size_t bytes) {
        if (bytes > kBlockBytes) return nullptr;
        if (free_.empty()) {
            blocks_.push_back(std::make_unique<Block>());
            free_.reserve(blocks_.size());  // so put() never allocates
            return blocks_.back()->mem;
        }
        void* p = free_.back();
        free_.pop_back();
        return p;
    }
    void put(void* p) noexcept { free_.push_back(p); }

  private:
    struct Block {
        alignas(std::max_align_t) std::byte mem[kBlockBytes];
    };
    std::vector<std::unique_ptr<Block>> blocks_;
    std::vector<void*> free_;
};

template <class T>
class PoolAllocator {
  public:
    using value_type = T;
    explicit PoolAllocator(HandlerPool* pool) noexcept : pool_(pool) {}
    template <class U>
    PoolAllocator(const PoolAllocator<U>& other) noexcept : pool_(other.pool()) {}

    T* allocate(std::size_t n) {
        if (alignof(T) <= alignof(std::max_align_t))
            if (void* p = pool_->get(n * sizeof(T))) return static_cast<T*>(p);
        return std::allocator<T>{}.allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (alignof(T) <= alignof(std::max_align_t) && n * sizeof(T) <= HandlerPool::kBlockBytes)
            return pool_->put(p);
        std::allocator<T>{}.deallocate(p, n);
    }

    HandlerPool* pool() const noexcept { return pool_; }
    template <class U>
    bool operator==(const PoolAllocator<U>& other) const noexcept {
        return pool_ == other.pool();
    }
    template <class U>
    bool operator!=(const PoolAllocator<U>& other) const noexcept {
        return pool_ != other.pool();
    }

  private:
    HandlerPool* pool_;
};

}  // namespace fp::net
