#pragma once
// Listening sockets: the per-worker SO_REUSEPORT sockets of a listener, and the start-up probe
// that refuses an address another process already listens on (SO_REUSEPORT would otherwise let
// a second fragproxy, or anything of the same uid, join the group silently and take part of the
// traffic). Start-up path: failures throw std::system_error naming the listener.
#include <string>

#include "net/base/address.hpp"
#include "net/base/fd.hpp"
#include "net/policy/settings.hpp"

namespace fp::net {

// A bound, listening TCP socket with SO_REUSEPORT (one per worker), TCP_NODELAY inherited by
// accepted sockets.
int tcp_listen_socket(const TcpListenerSettings& l);
// SO_KEEPALIVE and its timers on a socket (on: as configured; off: SO_KEEPALIVE 0). Accepted
// sockets inherit a listener's.
void set_keepalive(int fd, const Keepalive& k, bool on) noexcept;

// Throws when another socket is already bound to `addr` (TCP: listening; UDP: bound), unless
// the listener shares the port on purpose. Runs before any worker binds.
void check_port_free(const std::string& listener, const SockAddr& addr, bool udp);

// A listen address with port 0: binds a socket of the listener's SO_REUSEPORT group there (not
// listening: it takes no connection, and no datagram before anyone knows the port), sets
// addr's port to the one the kernel picked, and returns the socket, which holds that port until
// every worker's socket is bound to it; the caller closes it then.
Fd reserve_port(const std::string& listener, SockAddr& addr, bool udp);

// "listener 'NAME': socket (RLIMIT_NOFILE is N file descriptors)": context for socket() errors.
std::string socket_error_context(const std::string& listener);

}  // namespace fp::net
