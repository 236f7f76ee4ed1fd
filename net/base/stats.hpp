#pragma once
// Statistics, each declared once. A component lists its stats in an X-macro,
//
//   #define FP_THING_STATS(X) X(member, kCounter, "json_key", "fragproxy_family", "labels", "help")
//
// and from that one list come its storage (FP_STAT_MEMBER: a Counter per stat, written by the
// owning worker alone), its --stats-json keys and its /metrics samples (FP_STAT_DEF: a StatDef
// table the app layer walks), and the README's table of them (fragproxy --list-metrics, checked
// by a test). The model is Envoy's stats macros. Entries of one family (same metric name, other
// labels) are consecutive, and the first says the family's help; families may continue in
// another component's list (fragproxy_alloc_fragments_total{arena="tcp"}, {arena="udp"}).
#include <cstdint>
#include <span>

#include "alloc/counter.hpp"

namespace fp::net {

enum class StatType : std::uint8_t {
    kCounter,  // only grows; summed over the workers
    kGauge,    // a level (published by its worker); summed over the workers
    kPeak,     // a high-water mark: a gauge, the largest of the workers'
};

constexpr const char* stat_type_name(StatType t) noexcept {
    return t == StatType::kCounter ? "counter" : "gauge";
}

template <class Stats>
struct StatDef {
    const char* json;    // its key in --stats-json's section
    const char* metric;  // its /metrics family
    const char* labels;  // its labels in that family besides worker: "" or `k="v",...`
    StatType type;
    const char* help;  // the family's HELP ("": said by an earlier entry of the family)
    Counter Stats::*field;
};

}  // namespace fp::net

#define FP_STAT_MEMBER(member, type, json, metric, labels, help) ::fp::Counter member;
#define FP_STAT_DEF(member, type, json, metric, labels, help) \
    ::fp::net::StatDef<Self>{json, metric, labels, ::fp::net::StatType::type, help, &Self::member},
// After the struct: `table`, the StatDefs of `Stats` from its LIST.
// NOLINTBEGIN(bugprone-macro-parentheses): a type and a name, which parentheses would break.
#define FP_STAT_TABLE(table, Stats, LIST)                                        \
    namespace table##_detail {                                                   \
        using Self = Stats;                                                      \
        inline constexpr ::fp::net::StatDef<Self> kDefs[] = {LIST(FP_STAT_DEF)}; \
    }                                                                            \
    inline constexpr std::span<const ::fp::net::StatDef<Stats>> table = table##_detail::kDefs;
// NOLINTEND(bugprone-macro-parentheses)
