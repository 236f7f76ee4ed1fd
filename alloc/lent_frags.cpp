#include "alloc/lent_frags.hpp"

#include "alloc/check.hpp"
#include "alloc/frag.hpp"
#include "alloc/frag_debug.hpp"

namespace fp {

LentFrags::LentFrags(PagePool& pool, unsigned entries, std::uint32_t frag_bytes)
    : pool_(pool),
      cache_(pool),
      frag_bytes_(frag_bytes),
      frag_(entries, nullptr),
      size_(entries, 0) {
    FP_CHECK(entries && entries <= 32768, "lent fragments: 1..32768 slots, not %u", entries);
    FP_CHECK(frag_bytes && !(frag_bytes & (frag_bytes - 1)) && frag_bytes <= pool.block_bytes(),
             "lent fragments of %u bytes: a power of two up to a page", frag_bytes);
    empty_.reserve(entries);
    for (unsigned i = entries; i-- > 0;)
        empty_.push_back(static_cast<std::uint16_t>(i));
}

std::optional<std::uint16_t> LentFrags::refill() noexcept {
    if (empty_.empty()) return std::nullopt;
    auto* frag = static_cast<std::byte*>(cache_.alloc(frag_bytes_, frag_bytes_));
    if (!frag) return std::nullopt;
    std::uint16_t bid = empty_.back();
    empty_.pop_back();
    frag_[bid] = frag;
    size_[bid] = frag_bytes_;
    return bid;
}

std::byte* LentFrags::take(std::uint16_t bid, std::uint32_t len) noexcept {
    FP_CHECK(bid < frag_.size() && frag_[bid], "fragment reported in empty slot %u", bid);
    const std::uint32_t size = size_[bid];
    FP_CHECK(len <= size, "slot %u overrun: %u bytes of %u", bid, len, size);
    std::byte* frag = frag_[bid];
    const std::uint32_t at = (len + kTailAlign - 1) & ~(kTailAlign - 1);
    if (len && at < size && size - at >= min_tail()) {
        frag_[bid] = cache_.split(frag, size, at);  // the tail stays lent
        size_[bid] = size - at;
        return frag;
    }
    frag_[bid] = nullptr;
    empty_.push_back(bid);
    return frag;
}

void LentFrags::free_run(std::byte* any_frag, std::uint32_t count) noexcept {
    fp::drain(pool_, *pool_.page_of(any_frag), count);
}

void LentFrags::drain() noexcept {
    for (std::size_t i = 0; i < frag_.size(); ++i) {
        if (!frag_[i]) continue;
        cache_.free(frag_[i]);
        frag_[i] = nullptr;
        empty_.push_back(static_cast<std::uint16_t>(i));
    }
    cache_.drain();
}

}  // namespace fp
