#pragma once
// What a listener lets in, decided at accept before any upstream is touched (allow/deny,
// max_connections_per_source, new_connections_per_source):
//   CidrList     allow and deny prefixes, IPv4 and IPv6; the longest matching prefix decides; no
//                match: allowed unless an allow list exists (as nginx's allow/deny, HAProxy's
//                src ACLs, but by specificity rather than order).
//   SourceTable  per source address, across the workers, without a lock: connections open (a
//                count-min sketch of two rows of atomic counters: a collision can only count too
//                many, never too few) and a token bucket of new connections (one atomic word per
//                bucket, updated with compare-and-swap).
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "net/base/access_record.hpp"

namespace fp::net {

struct Cidr {
    std::uint8_t family = 0;  // AF_INET or AF_INET6
    std::uint8_t prefix = 0;  // bits
    std::uint8_t addr[16] = {};
    // "10.0.0.0/8", "2001:db8::/32", or a plain address (a /32 or /128). Empty on a bad string.
    static bool parse(const std::string& text, Cidr& out);
    bool contains(const AccessAddr& a) const noexcept;
    std::string str() const;
};

class CidrList {
  public:
    void add(const Cidr& c, bool allow);
    bool allowed(const AccessAddr& a) const noexcept;
    bool empty() const noexcept { return rules_.empty(); }
    struct Rule {
        Cidr cidr;
        bool allow;
    };
    const std::vector<Rule>& rules() const noexcept { return rules_; }

  private:
    std::vector<Rule> rules_;  // longest prefix first
    bool any_allow_ = false;
};

// New connections per source: a token bucket.
struct RateLimit {
    std::uint32_t count = 0;         // connections per period; 0: no limit
    std::uint32_t period_ms = 1000;  // a second (N/s) or a minute (N/m)
    std::uint32_t burst = 0;
};

class SourceTable {
  public:
    static constexpr std::uint32_t kBuckets = 16384;  // per row; a power of two

    SourceTable();
    // The source may open one more connection (count below `cap`, 0 = no cap, and a token in
    // its bucket): counted and true; else nothing changes and false. `reason` says which.
    enum class Verdict : std::uint8_t { kOk, kTooMany, kTooFast };
    Verdict admit(const AccessAddr& a, std::uint32_t cap, const RateLimit& rate,
                  std::uint64_t now_ms) noexcept;
    void release(const AccessAddr& a) noexcept;  // its connection ended (only after kOk)

  private:
    static std::uint64_t hash(const AccessAddr& a) noexcept;
    bool take_token(std::uint64_t h, const RateLimit& rate, std::uint64_t now_ms) noexcept;

    std::unique_ptr<std::atomic<std::uint32_t>[]> counts_;  // 2 rows
    std::unique_ptr<std::atomic<std::uint64_t>[]> tokens_;  // milli-tokens << 32 | time (ms)
};

}  // namespace fp::net
