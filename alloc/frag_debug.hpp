#pragma once
// Debug-build bookkeeping of live fragments (FRAGPROXY_DEBUG): catches a fragment freed twice, or a
// pointer freed that was never a fragment's start, which the page count alone cannot see while the
// page has other live fragments. Also gives ASan builds the size to poison on free. A mutex and a
// map: far too slow for release builds, where every function here is an empty inline.
#include <cstddef>

namespace fp::frag_debug {

#ifdef FRAGPROXY_DEBUG
void track(const void* p, std::size_t n) noexcept;
std::size_t untrack(const void* p) noexcept;               // aborts when p is not a live fragment
void forget_page(const void* va, std::size_t n) noexcept;  // the page's count reached zero
#else
inline void track(const void*, std::size_t) noexcept {}
inline std::size_t untrack(const void*) noexcept {
    return 0;
}
inline void forget_page(const void*, std::size_t) noexcept {}
#endif

}  // namespace fp::frag_debug
