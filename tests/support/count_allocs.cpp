// LD_PRELOAD shim for hot_path_test.py: counts the heap allocations a process makes (malloc,
// calloc, realloc, the aligned ones; C++'s operator new goes through malloc) and writes the count
// to $FP_ALLOC_COUNT_FILE when the process exits. glibc's own entry points (__libc_malloc, ...)
// do the allocating, so the shim needs no dlsym (which may itself allocate).
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {

std::atomic<unsigned long> allocations{0};

void count() noexcept {
    allocations.fetch_add(1, std::memory_order_relaxed);
}

struct Report {
    ~Report() {
        const char* path = std::getenv("FP_ALLOC_COUNT_FILE");
        if (!path) return;
        if (std::FILE* f = std::fopen(path, "w")) {
            std::fprintf(f, "%lu\n", allocations.load());
            std::fclose(f);
        }
    }
} report;

}  // namespace

extern "C" {

void* malloc(std::size_t n) {
    count();
    return __libc_malloc(n);
}

void* calloc(std::size_t n, std::size_t size) {
    count();
    return __libc_calloc(n, size);
}

void* realloc(void* p, std::size_t n) {
    count();
    return __libc_realloc(p, n);
}

void* memalign(std::size_t align, std::size_t n) {
    count();
    return __libc_memalign(align, n);
}

void* aligned_alloc(std::size_t align, std::size_t n) {
    count();
    return __libc_memalign(align, n);
}

int posix_memalign(void** out, std::size_t align, std::size_t n) {
    count();
    void* p = __libc_memalign(align, n);
    if (!p) return 12;  // ENOMEM
    *out = p;
    return 0;
}

void free(void* p) {
    __libc_free(p);
}

}  // extern "C"
