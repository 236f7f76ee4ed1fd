#include "net/policy/listen_socket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace fp::net {

std::string socket_error_context(const std::string& listener) {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    return "listener '" + listener + "': socket (RLIMIT_NOFILE is " + std::to_string(rl.rlim_cur) +
           " file descriptors)";
}

int tcp_listen_socket(const TcpListenerSettings& l) {
    const SockAddr& addr = l.listen;
    int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), socket_error_context(l.name));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr.family() == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    // Accepted sockets inherit TCP_NODELAY and keepalive from the listener: no setsockopt per
    // connection.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (l.keepalive.client) set_keepalive(fd, l.keepalive, true);
    if (::bind(fd, addr.sa(), addr.len) != 0 || ::listen(fd, 4096) != 0) {
        int err = errno;
        ::close(fd);
        throw std::system_error(err, std::generic_category(),
                                "listener '" + l.name + "': listen on " + addr.str());
    }
    return fd;
}

void set_keepalive(int fd, const Keepalive& k, bool on) noexcept {
    int flag = on ? 1 : 0;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &flag, sizeof flag);
    if (!on) return;
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &k.idle_s, sizeof k.idle_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &k.interval_s, sizeof k.interval_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &k.count, sizeof k.count);
}

// A socket without SO_REUSEPORT cannot bind where any socket is bound (TCP: SO_REUSEADDR still
// lets it past connections in TIME_WAIT; UDP: SO_REUSEADDR would share the port, so not set).
Fd reserve_port(const std::string& listener, SockAddr& addr, bool udp) {
    Fd fd(::socket(addr.family(), (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
    if (fd.get() < 0)
        throw std::system_error(errno, std::generic_category(), socket_error_context(listener));
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // (as the workers')
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr.family() == AF_INET6)
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::bind(fd.get(), addr.sa(), addr.len) != 0 ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "listener '" + listener + "': bind " + addr.str());
    addr.set_port(ntohs(addr.family() == AF_INET
                            ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                            : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port));
    return fd;
}

void check_port_free(const std::string& listener, const SockAddr& addr, bool udp) {
    int fd = ::socket(addr.family(), (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), socket_error_context(listener));
    int one = 1;
    if (!udp) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr.family() == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = ::bind(fd, addr.sa(), addr.len);
    int err = errno;
    ::close(fd);
    if (rc == 0) return;
    if (err == EADDRINUSE)
        throw std::system_error(err, std::generic_category(),
                                "listener '" + listener + "': " + (udp ? "udp " : "tcp ") +
                                    addr.str() +
                                    " is already in use by another process (set share_port: true "
                                    "to join its SO_REUSEPORT group on purpose)");
    throw std::system_error(err, std::generic_category(),
                            "listener '" + listener + "': bind " + addr.str());
}

}  // namespace fp::net
