#pragma once
// The registry of live pools: lets frag_free(ptr), like the kernel's virt_to_head_page(), find the
// page (and pool) of any fragment pointer without the caller naming the pool. A fixed table read
// without locks; pools register at construction and leave at destruction.
#include <cstddef>

namespace fp {

class PagePool;

void registry_add(PagePool* pool, const void* base, std::size_t size);  // throws when full
void registry_remove(PagePool* pool) noexcept;
PagePool* registry_find(const void* p) noexcept;

}  // namespace fp
