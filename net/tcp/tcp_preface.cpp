// TcpRelay, before the upstream is chosen: what the client sends first is read from its queued
// fragments (copied out for parsing only; the fragments stay queued and are sent as they came):
// the PROXY header of an accept_proxy listener (then dropped from the queue), the ClientHello of
// a listener with routes (kept: the upstream gets it unchanged); then the route and the pick.
#include <algorithm>
#include <cstring>

#include "net/tcp/tcp_relay.hpp"
#include "net/wire/client_hello.hpp"
#include "net/wire/proxy_header.hpp"

namespace fp::net {
namespace {

// The first bytes queued (up to max), copied into out; returns how many.
std::size_t peek(const FragQueue& q, std::uint8_t* out, std::size_t max) noexcept {
    std::size_t n = 0;
    for (const FragNode* f = q.head; f && n < max; f = f->next) {
        const std::size_t take = std::min<std::size_t>(f->len - f->sent, max - n);
        std::memcpy(out + n, f->frag + f->sent, take);
        n += take;
    }
    return n;
}

}  // namespace

// accept_proxy: the header may come in pieces; once whole and valid it is dropped from the
// queue, what follows it stays queued for the upstream, and the client it names is admitted.
void TcpRelay::read_proxy_header(Conn& c, std::uint32_t slot) noexcept {
    FragQueue& q = c.side[1].out;
    std::uint8_t buf[kProxyV2Max];
    const std::size_t n = peek(q, buf, sizeof buf);
    const ProxyHeader h = parse_proxy_header(buf, n);
    if (h.status == ProxyHeader::Status::kIncomplete && n < sizeof buf) return;  // more to come
    const AcceptProxy& ap = c.cfg->accept_proxy;
    ListenerCounters& lc = c.cfg->shared->per_worker[index_];
    if (h.status != ProxyHeader::Status::kDone || (h.version == 1 && !ap.v1) ||
        (h.version == 2 && !ap.v2)) {
        lc.proxy_invalid.add();
        return close_conn(c, slot, AccessEnd::kRejected, true);
    }
    // The header is not the client's payload: out of the queue and out of the byte counts.
    auto left = std::uint32_t(h.length);
    q.bytes -= left;
    queued_ -= left;
    c.bytes[0] -= left;
    stats_.bytes_client.sub(left);
    lc.bytes_client.sub(left);
    while (left > 0) {
        FragNode* f = q.head;
        const std::uint32_t rest = f->len - f->sent;
        if (left < rest) {
            f->sent += left;
            break;
        }
        left -= rest;
        recv_->free(q.pop()->frag);
        nodes_->put(f);
    }
    if (q.empty()) --queuing_;
    if (!h.local) {
        c.client = h.src;
        c.local = h.dst;
    }
    if (c.cfg->send_proxy == 2 && c.cfg->pass_tlvs.any() && !keep_tlvs(c, buf, h))
        return close_conn(c, slot, AccessEnd::kNone, true);  // (out of memory)
    admit_proxied(c, slot);
}

// The TLVs that send_proxy passes on, kept until the upstream's header is written: in a
// fragment of the preface cache (freed then, or at the close). False: no memory for them.
bool TcpRelay::keep_tlvs(Conn& c, const std::uint8_t* header, const ProxyHeader& h) noexcept {
    const std::size_t n = copy_tlvs(header, h, c.cfg->pass_tlvs, nullptr);
    if (n == 0) return true;
    // (the header they go on must fit one fragment too)
    if (n + kProxyHeaderMax + kCrcTlv > preface_->max_alloc()) return false;
    c.tlvs = static_cast<std::byte*>(preface_->alloc(n));
    if (!c.tlvs) return false;
    c.tlv_len = std::uint16_t(copy_tlvs(header, h, c.cfg->pass_tlvs, c.tlvs));
    return true;
}

// The client the PROXY header named goes through the listener's policy as a direct client does
// at accept, then to its route (what followed the header may hold its ClientHello already) or
// the balance.
void TcpRelay::admit_proxied(Conn& c, std::uint32_t slot) noexcept {
    const TcpListenerSettings& cfg = *c.cfg;
    if (Counter* refused = refusal(cfg, c.client)) return refuse(c, slot, *refused);
    c.source_counted = cfg.policy.limits();
    if (!cfg.routing.enabled()) return route_to(c, slot, -1);
    set_state(c, State::kClientHello);
    read_client_hello(c, slot);
}

// routes: the ClientHello may come in pieces (records split anywhere, over many segments); once
// whole its server name picks the route. Not TLS, or no server name: the default route. Invalid
// (or longer than kClientHelloMax): a reset, counted. No route: a close, counted.
void TcpRelay::read_client_hello(Conn& c, std::uint32_t slot) noexcept {
    const FragQueue& q = c.side[1].out;
    if (q.empty()) return;  // (after a PROXY header: nothing of the client's yet)
    std::uint8_t buf[kClientHelloScan];
    const std::size_t n = peek(q, buf, sizeof buf);
    const ClientHello h = parse_client_hello(buf, n);
    ListenerCounters& lc = c.cfg->shared->per_worker[index_];
    int route = -1;
    switch (h.status) {
        case ClientHello::Status::kIncomplete:
            return;  // more to come (the parser calls a scan-long prefix invalid)
        case ClientHello::Status::kInvalid:
            return refuse(c, slot, lc.hello_invalid, true);
        case ClientHello::Status::kNotTls:
            route = c.cfg->routing.fallback();
            break;
        case ClientHello::Status::kDone:
            route = c.cfg->routing.match(h.server_name());
            break;
    }
    if (route < 0) return refuse(c, slot, lc.no_route);
    route_to(c, slot, route);
}

// client_hello_timeout passed: a client that sent nothing may wait for its server to speak
// first (SMTP, MySQL): the default route. One that sent part of a ClientHello is reset.
void TcpRelay::hello_timed_out(Conn& c, std::uint32_t slot) noexcept {
    ListenerCounters& lc = c.cfg->shared->per_worker[index_];
    if (!c.side[1].out.empty()) return refuse(c, slot, lc.hello_timeout, true);
    const int route = c.cfg->routing.fallback();
    if (route < 0) return refuse(c, slot, lc.no_route);
    route_to(c, slot, route);
}

void TcpRelay::route_to(Conn& c, std::uint32_t slot, int route) noexcept {
    const std::uint16_t up = pick_upstream(listeners_[c.listener], *c.cfg, route, c.client);
    if (up == Balancer::kNone)  // every upstream of the route is out (health checks)
        return refuse(c, slot, c.cfg->shared->per_worker[index_].no_upstream);
    c.route = std::int16_t(route);
    c.upstream = up;
    if (route >= 0)
        if (RouteShared* r = c.cfg->routing.routes[std::size_t(route)].shared)
            r->per_worker[index_].connections.add();
    connect_upstream(slot);
}

// Refused after the accept (its PROXY header or ClientHello read): closed, counted by reason,
// logged as rejected; a reset when what it sent was invalid.
void TcpRelay::refuse(Conn& c, std::uint32_t slot, Counter& reason, bool reset) noexcept {
    stats_.refused.add();
    reason.add();
    close_conn(c, slot, AccessEnd::kRejected, reset);
}

}  // namespace fp::net
