#pragma once
// A connected AF_UNIX stream pair for tests, closed on scope exit.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

namespace fp::test {

struct SocketPair {
    int fd[2] = {-1, -1};
    SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd) == 0); }
    ~SocketPair() {
        ::close(fd[0]);
        ::close(fd[1]);
    }
    SocketPair(const SocketPair&) = delete;
    SocketPair& operator=(const SocketPair&) = delete;
};

}  // namespace fp::test
