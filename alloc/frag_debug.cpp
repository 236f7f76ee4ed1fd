#include "alloc/frag_debug.hpp"

#ifdef FRAGPROXY_DEBUG
#include <cstdint>
#include <map>
#include <mutex>

#include "alloc/check.hpp"

namespace fp::frag_debug {
namespace {

std::mutex g_mu;
std::map<std::uintptr_t, std::size_t>& live() {
    static std::map<std::uintptr_t, std::size_t> m;
    return m;
}

}  // namespace

void track(const void* p, std::size_t n) noexcept {
    std::lock_guard lock(g_mu);
    live()[reinterpret_cast<std::uintptr_t>(p)] = n;
}

std::size_t untrack(const void* p) noexcept {
    std::lock_guard lock(g_mu);
    auto it = live().find(reinterpret_cast<std::uintptr_t>(p));
    FP_CHECK(it != live().end(),
             "frag_free(%p): not a live fragment (freed twice, or not a "
             "fragment's start)",
             p);
    std::size_t n = it->second;
    live().erase(it);
    return n;
}

void forget_page(const void* va, std::size_t n) noexcept {
    std::lock_guard lock(g_mu);
    auto lo = reinterpret_cast<std::uintptr_t>(va);
    live().erase(live().lower_bound(lo), live().lower_bound(lo + n));
}

}  // namespace fp::frag_debug
#endif
