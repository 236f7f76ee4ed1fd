#pragma once
// Makes the allocator visible to AddressSanitizer: bytes of a page that belong to no
// live fragment are poisoned, so an overrun from one fragment into free space is reported even
// though the whole page is one mapping. No-ops in builds without ASan.
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define FRAGPROXY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FRAGPROXY_ASAN 1
#endif
#endif

#ifdef FRAGPROXY_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace fp {

inline void poison(const void* p, std::size_t n) noexcept {
#ifdef FRAGPROXY_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#else
    (void)p, (void)n;
#endif
}

// Whether the byte at p is poisoned (false without ASan).
inline bool poisoned(const void* p) noexcept {
#ifdef FRAGPROXY_ASAN
    return __asan_address_is_poisoned(p);
#else
    (void)p;
    return false;
#endif
}

inline void unpoison(const void* p, std::size_t n) noexcept {
#ifdef FRAGPROXY_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
    (void)p, (void)n;
#endif
}

}  // namespace fp
