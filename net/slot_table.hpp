#pragma once
// SlotTable: the connections (TCP) or sessions (UDP) of one worker, by slot, with generations.
// Every SQE names its slot and the slot's generation in its user_data (Tag); a slot is reused only
// once the last CQE of its previous life has arrived (`pending` is 0), and the generation makes a
// CQE that still reached a reused slot recognisable. Storage is reserved up front and never
// reallocates: the kernel holds pointers into entries (a send's msghdr).
//
// T derives from SlotHeader. Owner thread only.
#include <cstdint>
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
    void reserve(std::size_t n) {
        items_.reserve(n);
        free_.reserve(n);
    }
    // A fresh entry (T{}) with the next generation, or nothing when the table is full.
    std::optional<std::uint32_t> open() noexcept {
        std::uint32_t slot;
        if (!free_.empty()) {
            slot = free_.back();
            free_.pop_back();
        } else if (items_.size() < items_.capacity()) {
            slot = std::uint32_t(items_.size());
            items_.emplace_back();
        } else {
            return std::nullopt;
        }
        T& t = items_[slot];
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
        items_[slot].live = false;
        free_.push_back(slot);
        --live_;
    }
    // The live entry at `slot` in generation `gen`, or null (a CQE of an earlier life).
    T* find(std::uint32_t slot, std::uint32_t gen) noexcept {
        if (slot >= items_.size()) return nullptr;
        T& t = items_[slot];
        return t.live && t.gen == gen ? &t : nullptr;
    }
    T& operator[](std::uint32_t slot) noexcept { return items_[slot]; }
    const T& operator[](std::uint32_t slot) const noexcept { return items_[slot]; }
    bool full() const noexcept { return free_.empty() && items_.size() == items_.capacity(); }
    std::uint32_t size() const noexcept { return std::uint32_t(items_.size()); }
    std::uint32_t live() const noexcept { return live_; }

  private:
    std::vector<T> items_;
    std::vector<std::uint32_t> free_;
    std::uint32_t live_ = 0;
};

}  // namespace fp::net
