#pragma once
// FragQueue: the fragments waiting to be sent on one socket, in order. Nodes come from the worker's
// NodePool, sized at start: queueing a fragment never allocates. A send may take only part of the
// head fragment, so a node keeps the fragment's start (for freeing) and how much has been sent.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace fp::net {

struct FragNode {
    std::byte* frag = nullptr;
    std::uint32_t len = 0;
    std::uint32_t sent = 0;
    bool compact = false;  // a collapsed copy (or dense enough): never collapsed again
    FragNode* next = nullptr;
};

// Nodes are carved lazily from one uninitialised block, so only nodes ever used become resident.
class NodePool {
  public:
    explicit NodePool(std::size_t n)
        : raw_(new std::byte[n * sizeof(FragNode)]),
          base_(reinterpret_cast<FragNode*>(raw_.get())),
          capacity_(n) {}
    FragNode* get() noexcept {
        FragNode* n = free_;
        if (n) {
            free_ = n->next;
        } else if (carved_ < capacity_) {
            n = new (&base_[carved_++]) FragNode{};
        } else {
            return nullptr;
        }
        ++in_use_;
        return n;
    }
    void put(FragNode* n) noexcept {
        *n = FragNode{nullptr, 0, 0, false, free_};
        free_ = n;
        --in_use_;
    }
    std::size_t available() const noexcept { return capacity_ - in_use_; }
    std::size_t in_use() const noexcept { return in_use_; }

  private:
    std::unique_ptr<std::byte[]> raw_;
    FragNode* base_;
    std::size_t capacity_;
    std::size_t carved_ = 0;
    std::size_t in_use_ = 0;
    FragNode* free_ = nullptr;
};

struct FragQueue {
    FragNode* head = nullptr;
    FragNode* tail = nullptr;
    std::uint32_t bytes = 0;  // not yet sent

    bool empty() const noexcept { return head == nullptr; }
    void push(FragNode* n) noexcept {
        n->next = nullptr;
        (tail ? tail->next : head) = n;
        tail = n;
        bytes += n->len;
    }
    void push_front(FragNode* n) noexcept {  // ahead of what waits (nothing of it sent yet)
        n->next = head;
        head = n;
        if (!tail) tail = n;
        bytes += n->len;
    }
    FragNode* pop() noexcept {
        FragNode* n = head;
        head = n->next;
        if (!head) tail = nullptr;
        return n;
    }
};

}  // namespace fp::net
