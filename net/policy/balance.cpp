#include "net/policy/balance.hpp"

namespace fp::net {

const char* balance_name(Balance b) noexcept {
    switch (b) {
        case Balance::kRoundRobin:
            return "round_robin";
        case Balance::kLeastConn:
            return "least_conn";
        case Balance::kRandom2:
            return "random2";
        case Balance::kSourceHash:
            return "source_hash";
    }
    return "?";
}

std::uint64_t hash_bytes(std::span<const std::uint8_t> bytes) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (std::uint8_t b : bytes)
        h = (h ^ b) * 1099511628211ull;
    h ^= h >> 33;  // murmur3's finaliser
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

MaglevTable::MaglevTable(const std::vector<std::string>& names,
                         const std::vector<std::uint32_t>& weights)
    : table_(kSize, UINT16_MAX) {
    const std::size_t n = names.size();
    if (n == 0) return;
    std::vector<std::uint64_t> offset(n), skip(n), next(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
        const auto* p = reinterpret_cast<const std::uint8_t*>(names[i].data());
        const std::uint64_t h = hash_bytes({p, names[i].size()});
        offset[i] = h % kSize;
        skip[i] = (h >> 32) % (kSize - 1) + 1;
    }
    std::uint32_t filled = 0;
    while (filled < kSize) {
        for (std::size_t i = 0; i < n && filled < kSize; ++i)
            for (std::uint32_t turn = 0; turn < weights[i] && filled < kSize; ++turn) {
                std::uint64_t slot;
                do {  // the next slot of its permutation that is still free
                    slot = (offset[i] + next[i] * skip[i]) % kSize;
                    ++next[i];
                } while (table_[slot] != UINT16_MAX);
                table_[slot] = std::uint16_t(i);
                ++filled;
            }
    }
}

void Balancer::reset(std::size_t upstreams, std::uint64_t seed) {
    current_.assign(upstreams, 0);
    rng_ = seed * 0x9e3779b97f4a7c15ull + 1;
}

std::uint64_t Balancer::next_random() noexcept {  // xorshift64*
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545f4914f6cdd1dull;
}

}  // namespace fp::net
