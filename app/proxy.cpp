#include "app/proxy.hpp"

namespace fp::app {

Proxy::Proxy(const Config& config) : config_(config), shared_(config.worker.listeners.size()) {}

Proxy::~Proxy() {
    stop();
}

void Proxy::start() {
    for (unsigned i = 0; i < config_.workers; ++i) {
        workers_.push_back(std::make_unique<net::Worker>(config_.worker, shared_, i));
        try {
            workers_.back()->start();
        } catch (...) {
            workers_.pop_back();
            stop();
            throw;
        }
    }
}

void Proxy::stop() {
    for (auto& w : workers_)
        w->stop();
}

void Proxy::report(std::ostream& out) const {
    std::uint64_t accepted = 0, refused = 0, closed = 0, resets = 0, failures = 0, in = 0, back = 0;
    std::size_t pages = 0;
    long fds = 0;
    for (const auto& w : workers_) {
        const auto& s = w->stats();
        accepted += s.accepted.get();
        refused += s.refused.get();
        closed += s.closed.get();
        resets += s.resets.get();
        failures += s.upstream_failures.get();
        in += s.bytes_client.get();
        back += s.bytes_upstream.get();
        pages += w->leaked_pages();
        fds += w->leaked_fds();
    }
    out << "fragproxy: connections accepted " << accepted << ", refused " << refused << ", closed "
        << closed << " (" << resets << " reset), upstream failures " << failures << "; bytes " << in
        << " client->upstream, " << back << " upstream->client\n"
        << "fragproxy: at exit: pages in use " << pages << ", fds open " << fds << "\n";
    if (config_.worker.udp_listeners.empty()) return;
    std::uint64_t din = 0, dout = 0, sessions = 0, expired = 0, capped = 0, nobuf = 0, errs = 0;
    std::uint64_t sends = 0, refused_gso = 0, waits = 0;
    for (const auto& w : workers_) {
        const auto& u = w->udp_stats();
        din += u.datagrams_in.get();
        dout += u.datagrams_out.get();
        sessions += u.sessions.get();
        expired += u.sessions_expired.get();
        capped += u.sessions_refused.get();
        nobuf += u.dropped_no_buffer.get();
        errs += u.upstream_errors.get();
        sends += u.sends.get();
        refused_gso += u.gso_refused.get();
        waits += u.buffer_waits.get();
    }
    out << "fragproxy: udp: datagrams in " << din << ", out " << dout << "; sessions " << sessions
        << ", expired " << expired << ", refused " << capped << "; dropped for want of buffers "
        << nobuf << ", upstream errors " << errs << "; sendmsg calls " << sends
        << " (GSO batches refused by the path " << refused_gso << "); receives that waited for "
        << "buffers " << waits << "\n";
}

bool Proxy::leaked() const {
    for (const auto& w : workers_)
        if (w->leaked_pages() || w->leaked_fds()) return true;
    return false;
}

}  // namespace fp::app
