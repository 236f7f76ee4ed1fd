#pragma once
// Assertions in tiers:
//  FP_CHECK  always on: cheap guards against misuse that would otherwise corrupt memory silently
//            (bad sizes, pointers from nowhere, refcount underflow). Prints why, then aborts.
//  FP_DCHECK compiled in only when FRAGPROXY_DEBUG is defined (debug and sanitizer builds).
#include <cstdio>
#include <cstdlib>

namespace fp::detail {
[[noreturn, gnu::cold, gnu::format(printf, 3, 4)]] void check_failed(const char* file, int line,
                                                                     const char* fmt, ...) noexcept;
}  // namespace fp::detail

#define FP_LIKELY(x) __builtin_expect(!!(x), 1)
#define FP_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define FP_CHECK(cond, ...)                                                                    \
    do {                                                                                       \
        if (FP_UNLIKELY(!(cond))) ::fp::detail::check_failed(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#ifdef FRAGPROXY_DEBUG
#define FP_DCHECK(cond, ...) FP_CHECK(cond, __VA_ARGS__)
#else
#define FP_DCHECK(cond, ...) \
    do {                     \
    } while (0)
#endif
