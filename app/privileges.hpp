#pragma once
// Privilege drop (`user:`): started as root, the process (every thread: glibc applies set*id to
// all of them) runs as that user and its group once every socket is bound.
#include <string>

namespace fp::app {

// Empty user: nothing. Not root: nothing, and says so (the user is what it already is). Throws
// std::system_error when a step fails; afterwards, root cannot be taken back (checked).
void drop_privileges(const std::string& user);

}  // namespace fp::app
