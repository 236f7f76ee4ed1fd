#pragma once
// The allocator self-check the binary runs until the proxy itself exists: carves and frees a
// burst of fragments through one worker-style cache, registers the arena with an io_uring, receives
// into a fragment with read_fixed, and verifies that every page is back in the pool.
#include <iosfwd>

#include "alloc/page_pool.hpp"

namespace fp::app {

// Returns true when every step passed; reports each step on `out`.
bool self_check(const PoolConfig& config, std::ostream& out);

}  // namespace fp::app
