#pragma once
// Which upstream a new connection or UDP session goes to (a listener's `balance:`), as HAProxy's
// and nginx's users know them:
//   round_robin  smooth weighted round robin (nginx's): at each pick every upstream gains its
//                weight, the one with the most goes and gives back the total. Each worker keeps
//                its own cursor (no shared state), so a weight-3:1 pair gets 3:1 on every worker.
//   least_conn   the fewest active connections for its weight, counted across the workers (each
//                worker's own counts, read relaxed: no lock, no shared write); ties go round robin.
//   random2      two upstreams drawn at random by weight, the less loaded of them goes (power of
//   two
//                choices: near least_conn's balance without looking at every upstream).
//   source_hash  a Maglev table of the client address: the same source always goes to the same
//                upstream, and when one of N upstreams goes away only about 1/N of sources move.
// A connection whose upstream fails to connect tries the next in the list (every balance).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fp::net {

enum class Balance : std::uint8_t { kRoundRobin, kLeastConn, kRandom2, kSourceHash };

const char* balance_name(Balance b) noexcept;

// Maglev (Eisenbud et al., NSDI 2016): each upstream's preference list is a permutation of the
// table's slots from two hashes of its name; upstreams take turns (weight turns per round) to
// claim their next free preferred slot until the table is full. Built once per configuration,
// read-only after: the workers share it.
class MaglevTable {
  public:
    static constexpr std::uint32_t kSize = 65537;  // prime; at most a few hundred upstreams

    MaglevTable(const std::vector<std::string>& names, const std::vector<std::uint32_t>& weights);
    std::uint16_t lookup(std::uint64_t hash) const noexcept { return table_[hash % kSize]; }

  private:
    std::vector<std::uint16_t> table_;
};

// A 64-bit hash of bytes (FNV-1a, then a finaliser so nearby addresses spread).
std::uint64_t hash_bytes(std::span<const std::uint8_t> bytes) noexcept;

// One worker's state of one listener's balance, and the pick.
class Balancer {
  public:
    static constexpr std::uint16_t kNone = UINT16_MAX;  // no usable upstream
    // active(i): connections to upstream i, across the workers (for least_conn and random2);
    // usable(i): not taken out by health checks. kNone when none is usable.
    template <class Active, class Usable>
    std::uint16_t pick(Balance b, std::span<const std::uint32_t> weights, const MaglevTable* table,
                       std::uint64_t source_hash, Active&& active, Usable&& usable) noexcept;
    void reset(std::size_t upstreams, std::uint64_t seed);

  private:
    // Over the usable upstreams only (the others count as weight 0); kNone if there are none.
    template <class Usable>
    std::uint16_t round_robin(std::span<const std::uint32_t> weights, Usable&& usable) noexcept;
    template <class Usable>
    std::uint16_t weighted_random(std::span<const std::uint32_t> weights, Usable&& usable) noexcept;
    std::uint64_t next_random() noexcept;

    std::vector<std::int64_t> current_;  // smooth round robin's running weights
    std::uint64_t rng_ = 0x9e3779b97f4a7c15ull;
};

template <class Active, class Usable>
std::uint16_t Balancer::pick(Balance b, std::span<const std::uint32_t> weights,
                             const MaglevTable* table, std::uint64_t source_hash, Active&& active,
                             Usable&& usable) noexcept {
    const std::size_t n = weights.size();
    if (n == 1) return usable(0) ? 0 : kNone;
    // Load for its weight, compared without division: a/wa < b/wb  <=>  a*wb < b*wa.
    auto lighter = [&](std::size_t a, std::size_t c) {
        return std::uint64_t(active(a)) * weights[c] < std::uint64_t(active(c)) * weights[a];
    };
    switch (b) {
        case Balance::kRoundRobin:
            break;
        case Balance::kSourceHash:
            if (!table) break;
            // The source's own upstream; when it is out, a few more looks (rehashed), so its
            // sources spread over the others while every other source stays where it was.
            for (std::uint64_t h = source_hash, k = 0; k < 8; ++k) {
                const std::uint16_t i = table->lookup(h);
                if (usable(i)) return i;
                h = h * 0x9e3779b97f4a7c15ull + k + 1;
            }
            break;
        case Balance::kRandom2: {
            const std::uint16_t x = weighted_random(weights, usable);
            if (x == kNone) return kNone;
            const std::uint16_t y = weighted_random(weights, usable);
            return lighter(y, x) ? y : x;
        }
        case Balance::kLeastConn: {
            const std::uint16_t start = round_robin(weights, usable);  // ties: the turn
            if (start == kNone) return kNone;
            std::size_t best = start;
            for (std::size_t k = 1; k < n; ++k) {
                const std::size_t i = (start + k) % n;
                if (usable(i) && lighter(i, best)) best = i;
            }
            return std::uint16_t(best);
        }
    }
    return round_robin(weights, usable);
}

// nginx's smooth weighted round robin: 5:1:1 goes a a b a c a a, never a burst of one upstream.
template <class Usable>
std::uint16_t Balancer::round_robin(std::span<const std::uint32_t> weights,
                                    Usable&& usable) noexcept {
    if (current_.size() != weights.size()) current_.assign(weights.size(), 0);
    std::int64_t total = 0;
    std::size_t best = kNone;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        if (!usable(i)) continue;
        current_[i] += weights[i];
        total += weights[i];
        if (best == kNone || current_[i] > current_[best]) best = i;
    }
    if (best == kNone) return kNone;
    current_[best] -= total;
    return std::uint16_t(best);
}

template <class Usable>
std::uint16_t Balancer::weighted_random(std::span<const std::uint32_t> weights,
                                        Usable&& usable) noexcept {
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < weights.size(); ++i)
        if (usable(i)) total += weights[i];
    if (total == 0) return kNone;
    std::uint64_t r = next_random() % total;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        if (!usable(i)) continue;
        if (r < weights[i]) return std::uint16_t(i);
        r -= weights[i];
    }
    return kNone;
}

}  // namespace fp::net
