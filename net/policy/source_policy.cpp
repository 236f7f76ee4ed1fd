#include "net/policy/source_policy.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "net/policy/balance.hpp"

namespace fp::net {

bool Cidr::parse(const std::string& text, Cidr& out) {
    const auto slash = text.find('/');
    const std::string host = text.substr(0, slash);
    Cidr c;
    if (::inet_pton(AF_INET, host.c_str(), c.addr) == 1) {
        c.family = AF_INET;
        c.prefix = 32;
    } else if (::inet_pton(AF_INET6, host.c_str(), c.addr) == 1) {
        c.family = AF_INET6;
        c.prefix = 128;
    } else {
        return false;
    }
    if (slash != std::string::npos) {
        const std::string bits = text.substr(slash + 1);
        if (bits.empty() || bits.size() > 3 ||
            !std::all_of(bits.begin(), bits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
            return false;
        const int n = std::stoi(bits);
        if (n > c.prefix) return false;
        c.prefix = std::uint8_t(n);
    }
    // The host bits are cleared: 10.1.2.3/8 means 10.0.0.0/8.
    for (unsigned i = 0; i < 16; ++i) {
        const int keep = std::clamp(int(c.prefix) - int(i) * 8, 0, 8);
        c.addr[i] &= std::uint8_t(0xff00 >> keep);
    }
    out = c;
    return true;
}

bool Cidr::contains(const AccessAddr& a) const noexcept {
    if (a.family != family) return false;
    unsigned bits = prefix, i = 0;
    for (; bits >= 8; bits -= 8, ++i)
        if (a.addr[i] != addr[i]) return false;
    return bits == 0 || ((a.addr[i] ^ addr[i]) & std::uint8_t(0xff00 >> bits)) == 0;
}

std::string Cidr::str() const {
    char host[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(family, addr, host, sizeof host);
    return std::string(host) + "/" + std::to_string(prefix);
}

void CidrList::add(const Cidr& c, bool allow) {
    rules_.push_back({c, allow});
    std::stable_sort(rules_.begin(), rules_.end(),
                     [](const Rule& a, const Rule& b) { return a.cidr.prefix > b.cidr.prefix; });
    any_allow_ |= allow;
}

bool CidrList::allowed(const AccessAddr& a) const noexcept {
    for (const Rule& r : rules_)  // longest prefix first: the first match is the most specific
        if (r.cidr.contains(a)) return r.allow;
    return !any_allow_;
}

SourceTable::SourceTable()
    : counts_(std::make_unique<std::atomic<std::uint32_t>[]>(std::size_t{2} * kBuckets)),
      tokens_(std::make_unique<std::atomic<std::uint64_t>[]>(kBuckets)) {}

std::uint64_t SourceTable::hash(const AccessAddr& a) noexcept {
    return hash_bytes({a.addr, a.family == AF_INET ? 4u : 16u});
}

SourceTable::Verdict SourceTable::admit(const AccessAddr& a, std::uint32_t cap,
                                        const RateLimit& rate, std::uint64_t now_ms) noexcept {
    const std::uint64_t h = hash(a);
    auto& c0 = counts_[h % kBuckets];
    auto& c1 = counts_[kBuckets + (h >> 32) % kBuckets];
    if (cap) {
        const std::uint32_t n0 = c0.fetch_add(1, std::memory_order_relaxed) + 1;
        const std::uint32_t n1 = c1.fetch_add(1, std::memory_order_relaxed) + 1;
        if (std::min(n0, n1) > cap) {
            c0.fetch_sub(1, std::memory_order_relaxed);
            c1.fetch_sub(1, std::memory_order_relaxed);
            return Verdict::kTooMany;
        }
    }
    if (rate.count && !take_token(h, rate, now_ms)) {
        if (cap) {
            c0.fetch_sub(1, std::memory_order_relaxed);
            c1.fetch_sub(1, std::memory_order_relaxed);
        }
        return Verdict::kTooFast;
    }
    if (!cap) {  // counted anyway: release() does not know the cap it was admitted under
        c0.fetch_add(1, std::memory_order_relaxed);
        c1.fetch_add(1, std::memory_order_relaxed);
    }
    return Verdict::kOk;
}

void SourceTable::release(const AccessAddr& a) noexcept {
    const std::uint64_t h = hash(a);
    counts_[h % kBuckets].fetch_sub(1, std::memory_order_relaxed);
    counts_[kBuckets + (h >> 32) % kBuckets].fetch_sub(1, std::memory_order_relaxed);
}

// The bucket holds milli-tokens (high 32 bits) and when it was last filled (low 32 bits, ms; the
// difference wraps correctly). An untouched bucket (0) starts full.
bool SourceTable::take_token(std::uint64_t h, const RateLimit& rate,
                             std::uint64_t now_ms) noexcept {
    auto& word = tokens_[(h >> 16) % kBuckets];
    const std::uint64_t full = std::uint64_t(std::max(rate.burst, 1u)) * 1000;
    const auto now = std::uint32_t(now_ms);
    std::uint64_t old = word.load(std::memory_order_relaxed);
    for (;;) {
        std::uint64_t milli = full;
        if (old != 0) {
            const std::uint32_t elapsed = now - std::uint32_t(old);
            milli = std::min(
                full, (old >> 32) + std::uint64_t(elapsed) * rate.count * 1000 / rate.period_ms);
        }
        if (milli < 1000) return false;
        const std::uint64_t next = ((milli - 1000) << 32) | now;
        if (word.compare_exchange_weak(old, next == 0 ? 1 : next, std::memory_order_relaxed))
            return true;
    }
}

}  // namespace fp::net
