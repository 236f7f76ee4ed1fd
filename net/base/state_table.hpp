#pragma once
// A life cycle as a table, the kernel's tcp_set_state() as the model: the states of a type and
// the edges between them that the design allows, in one constexpr table beside the type, and one
// writer. set_state() is the only way a state changes; an edge the table lacks is a bug, so it
// aborts in debug and sanitizer builds (FRAGPROXY_DEBUG) and is counted in release builds, where
// the change still happens (the connection's close must go on whatever state it was found in).
//
//   constexpr StateTable<State, 3> kEdges{{{State::kA, State::kB}, {State::kB, State::kC}}};
//   set_state(obj.state, State::kB, kEdges, stats.illegal_transitions);
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "alloc/check.hpp"
#include "alloc/counter.hpp"

namespace fp::net {

// Up to 32 states (an enum of std::uint8_t values 0..N-1); edges[i] has bit j for i -> j.
template <class State, std::size_t N>
class StateTable {
    static_assert(N <= 32, "a StateTable holds up to 32 states");

  public:
    constexpr StateTable(std::initializer_list<std::pair<State, State>> allowed) noexcept {
        for (const auto& [from, to] : allowed)
            edges_[index(from)] |= std::uint32_t{1} << index(to);
    }
    constexpr bool allows(State from, State to) const noexcept {
        return (edges_[index(from)] >> index(to)) & 1u;
    }
    // The states with no edge out (a table's ends): used by the tests that walk it.
    constexpr bool final(State s) const noexcept { return edges_[index(s)] == 0; }
    static constexpr std::size_t size() noexcept { return N; }

  private:
    static constexpr std::size_t index(State s) noexcept { return std::size_t(s); }
    std::uint32_t edges_[N] = {};
};

// The one writer of a state: `state` becomes `to`. Returns whether the table allows the edge.
template <class State, std::size_t N>
inline bool set_state(State& state, State to, const StateTable<State, N>& table,
                      Counter& illegal) noexcept {
    const bool ok = table.allows(state, to);
    if (FP_UNLIKELY(!ok)) {
        FP_DCHECK(ok, "illegal state transition %u -> %u", unsigned(state), unsigned(to));
        illegal.add();
    }
    state = to;
    return ok;
}

}  // namespace fp::net
