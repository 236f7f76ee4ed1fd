#pragma once
// SlotTable: the connections (TCP) or sessions (UDP) of one worker, by slot, with generations.
// Every SQE names its slot and the slot's generation in its user_data (Tag); a slot is reused only
// once the last CQE of its previous life has arrived (`pending` is 0), and the generation makes a
// CQE that still reached a reused slot recognisable. Entries never move (the kernel holds pointers
// into them: a send's msghdr): storage comes in chunks that stay where they are when the table
// grows.
//
// T derives from SlotHeader. Owner thread only.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <vector>

namespace fp::net {

struct SlotHeader {
    std::uint32_t gen = 0;
    std::uint32_t pending = 0;  // SQEs of this slot whose final CQE has not arrived
    bool live = false;
};

template <class T>
class SlotTable {
  public:
    SlotTable() = default;
    SlotTable(const SlotTable&) = delete;
    SlotTable& operator=(const SlotTable&) = delete;
    ~SlotTable() {
        for (std::uint32_t i = 0; i < size_; ++i)
            slot_ptr(i)->~T();
    }
    // The most entries the table may hold; may grow later (a reload), never shrinks. Storage comes
    // in chunks of kChunk entries, allocated when the first of their slots opens and never moved,
    // so growing leaves every entry where it is.
    void reserve(std::size_t n) {
        if (n <= capacity_) return;
        capacity_ = n;
        chunks_.reserve((n + kChunk - 1) / kChunk);
        free_.reserve(n);
    }
    // A fresh entry (T{}) with the next generation, or nothing when the table is full.
    std::optional<std::uint32_t> open() noexcept {
        std::uint32_t slot;
        if (!free_.empty()) {
            slot = free_.back();
            free_.pop_back();
        } else if (size_ < capacity_) {
            if (size_ % kChunk == 0)  // once per kChunk entries, at the high-water mark
                chunks_.push_back(std::make_unique_for_overwrite<Storage[]>(kChunk));
            slot = size_++;
            new (slot_ptr(slot)) T{};
        } else {
            return std::nullopt;
        }
        T& t = *slot_ptr(slot);
        std::uint32_t gen = t.gen + 1;
        t.~T();
        new (&t) T{};
        t.gen = gen;
        t.live = true;
        ++live_;
        return slot;
    }
    // The entry's life ends; its slot is free for the next open(). Its SQEs must all be complete.
    void close(std::uint32_t slot) noexcept {
        slot_ptr(slot)->live = false;
        free_.push_back(slot);
        --live_;
    }
    // The live entry at `slot` in generation `gen`, or null (a CQE of an earlier life).
    T* find(std::uint32_t slot, std::uint32_t gen) noexcept {
        if (slot >= size_) return nullptr;
        T* t = slot_ptr(slot);
        return t->live && t->gen == gen ? t : nullptr;
    }
    T& operator[](std::uint32_t slot) noexcept { return *slot_ptr(slot); }
    const T& operator[](std::uint32_t slot) const noexcept { return *slot_ptr(slot); }
    bool full() const noexcept { return free_.empty() && size_ == capacity_; }
    std::uint32_t size() const noexcept { return size_; }
    std::uint32_t live() const noexcept { return live_; }
    std::size_t capacity() const noexcept { return capacity_; }

  private:
    static constexpr std::uint32_t kChunk = 1024;
    struct Storage {
        alignas(T) std::byte bytes[sizeof(T)];
    };
    T* slot_ptr(std::uint32_t slot) const noexcept {
        return std::launder(reinterpret_cast<T*>(chunks_[slot / kChunk][slot % kChunk].bytes));
    }

    std::vector<std::unique_ptr<Storage[]>> chunks_;
    std::vector<std::uint32_t> free_;
    std::size_t capacity_ = 0;
    std::uint32_t size_ = 0;
    std::uint32_t live_ = 0;
};

}  // namespace fp::net
