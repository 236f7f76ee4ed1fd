#include "app/proxy.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "net/engine/features.hpp"
#include "net/engine/reactor.hpp"
#include "net/policy/listen_socket.hpp"

namespace fp::app {

namespace {

// Listen addresses with port 0 get the kernel's choice: a reservation socket per listener holds
// the port (the caller keeps them until every worker's socket is bound there). `running`: a
// listener of the same name and protocol on the same host keeps the port it has (a reload).
std::vector<net::Fd> reserve_ports(Config& next, const Config* running) {
    std::vector<net::Fd> held;
    auto same_host = [](net::SockAddr a, const net::SockAddr& b) {
        a.set_port(b.port());
        return a == b;
    };
    auto each = [&](auto& list, const auto* old, bool udp) {
        for (auto& l : list) {
            if (l.listen.port() != 0) continue;
            bool kept = false;
            for (std::size_t i = 0; old && i < old->size() && !kept; ++i)
                if ((*old)[i].name == l.name && same_host(l.listen, (*old)[i].listen)) {
                    l.listen = (*old)[i].listen;
                    kept = true;
                }
            if (!kept) held.push_back(net::reserve_port(l.name, l.listen, udp));
        }
    };
    each(next.worker.listeners, running ? &running->worker.listeners : nullptr, false);
    each(next.worker.udp_listeners, running ? &running->worker.udp_listeners : nullptr, true);
    return held;
}

}  // namespace

Proxy::Proxy(Config config, AccessLog* log) : config_(std::move(config)), log_(log) {
    // Another process on a listener's address is refused before anything binds; then port-0
    // listeners get their ports (before the listeners are keyed by address).
    for (const auto& l : config_.worker.listeners)
        if (!l.share_port && l.listen.port()) net::check_port_free(l.name, l.listen, false);
    for (const auto& l : config_.worker.udp_listeners)
        if (!l.share_port && l.listen.port()) net::check_port_free(l.name, l.listen, true);
    reserved_ = reserve_ports(config_, nullptr);
    share_listeners(config_);
}

// Each listener gets the counters of its address (and protocol), each upstream those of its own
// (the same across reloads).
net::ListenerShared* Proxy::share_listener(const std::string& name, const std::string& key,
                                           bool udp, unsigned workers) {
    ListenerEntry& e = listeners_[key];
    if (!e.shared) e.shared = std::make_unique<net::ListenerShared>(workers);
    e.name = name;
    e.udp = udp;
    return e.shared.get();
}

void Proxy::share_listeners(Config& config) {
    std::lock_guard lock(config_mu_);
    for (auto& l : config.worker.listeners) {
        const std::string key = l.listen.str() + (l.share_port ? " shared" : "");
        l.shared = share_listener(l.name, key, false, config.workers);
        if (l.policy.limits() && !l.shared->sources)
            l.shared->sources = std::make_unique<net::SourceTable>();
        for (net::Route& r : l.routing.routes) {
            RouteEntry& re = routes_[key + "\n" + r.name];
            if (!re.shared) re.shared = std::make_unique<net::RouteShared>(config.workers);
            re.listener = l.name;
            re.route = r.name;
            r.shared = re.shared.get();
        }
        share_upstreams(l, config.workers);
    }
    for (auto& l : config.worker.udp_listeners) {
        l.shared = share_listener(l.name, "udp " + l.listen.str() + (l.share_port ? " shared" : ""),
                                  true, config.workers);
        share_upstreams(l, config.workers);
    }
}

template <class Listener>
void Proxy::share_upstreams(Listener& l, unsigned workers) {
    l.upstream_shared.clear();
    for (const auto& up : l.upstreams) {
        auto& u = upstreams_[up.str()];
        if (!u) u = std::make_unique<net::UpstreamShared>(workers);
        l.upstream_shared.push_back(u.get());
    }
}

// The checks the configuration asks for (first listener naming an address sets its check), and
// the passive threshold of those upstreams.
void Proxy::configure_health(const Config& config) {
    std::map<std::string, HealthChecker::Target> targets;
    std::map<std::string, std::vector<net::UpstreamShared*>> listeners_of;
    for (const auto& l : config.worker.listeners) {
        if (!l.health.enabled) continue;
        listeners_of[l.name] = l.upstream_shared;
        for (std::size_t i = 0; i < l.upstreams.size(); ++i) {
            auto [it, fresh] = targets.try_emplace(
                l.upstreams[i].str(),
                HealthChecker::Target{l.upstreams[i], l.health, l.upstream_shared[i], {}});
            it->second.listeners.push_back(l.name);
            if (fresh) l.upstream_shared[i]->fall.store(l.health.fall, std::memory_order_relaxed);
        }
    }
    if (targets.empty() && !health_) return;
    if (!health_) health_ = std::make_unique<HealthChecker>();
    std::vector<HealthChecker::Target> list;
    list.reserve(targets.size());
    for (auto& [addr, t] : targets)
        list.push_back(std::move(t));
    health_->configure(std::move(list), std::move(listeners_of));
}

void Proxy::for_each_listener(
    const std::function<void(const std::string&, const net::ListenerShared&)>& fn,
    Protocols which) const {
    std::lock_guard lock(config_mu_);
    for (const auto& [addr, e] : listeners_)
        if (which == Protocols::kAll || (which == Protocols::kUdp) == e.udp) fn(e.name, *e.shared);
}

void Proxy::for_each_route(const std::function<void(const std::string&, const std::string&,
                                                    const net::RouteShared&)>& fn) const {
    std::lock_guard lock(config_mu_);
    for (const auto& [key, r] : routes_)
        fn(r.listener, r.route, *r.shared);
}

void Proxy::for_each_upstream(
    const std::function<void(const std::string&, const net::UpstreamShared&)>& fn) const {
    std::lock_guard lock(config_mu_);
    for (const auto& [addr, u] : upstreams_)
        fn(addr, *u);
}

std::uint64_t Proxy::tick_age_ms(std::size_t i) const noexcept {
    const std::uint64_t now = net::monotonic_ms(), alive = workers_[i]->alive_ms();
    return now > alive ? now - alive : 0;
}

std::string Proxy::health() const {
    std::string why;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        const std::uint64_t age = tick_age_ms(i);
        std::string w;
        if (workers_[i]->ended())
            w = "worker " + std::to_string(i) + " has ended";
        else if (age > kStalledMs)
            w = "worker " + std::to_string(i) + " has not run its loop for " +
                std::to_string(age / 1000) + " s";
        if (!w.empty()) why += (why.empty() ? "" : "; ") + w;
    }
    return why;
}

Config Proxy::config() const {
    std::lock_guard lock(config_mu_);
    return config_;
}

// What a reload cannot change in running workers is kept as it runs; the message names it.
std::string Proxy::keep_restart_only(Config& next) const {
    auto stripped = [](Config c) {
        c.worker.listeners.clear();
        c.worker.udp_listeners.clear();
        c.drain_timeout = {};
        c.source.clear();
        c.arena_mark = {};
        return describe(c);
    };
    if (next.worker.recv_path == net::RecvPath::kAuto)  // as resolved at start
        next.worker.recv_path = config_.worker.recv_path;
    if (next.worker.backend == net::Backend::kAuto) next.worker.backend = config_.worker.backend;
    const bool changed = stripped(next) != stripped(config_);
    next.workers = config_.workers;
    next.admin = config_.admin;
    next.user = config_.user;
    next.access_log = config_.access_log;
    auto listeners = std::move(next.worker.listeners);
    auto udp_listeners = std::move(next.worker.udp_listeners);
    next.worker = config_.worker;
    next.worker.listeners = std::move(listeners);
    next.worker.udp_listeners = std::move(udp_listeners);
    return changed
               ? "workers, memory, io_uring, backend, admin, user or access_log changed: they take "
                 "effect at the next start; running as before"
               : "";
}

Proxy::ReloadResult Proxy::reload(Config next) {
    std::lock_guard serial(reload_mu_);
    ReloadResult r;
    auto fail = [&](std::string why) {
        reloads_failed_.fetch_add(1, std::memory_order_relaxed);
        r.message = std::move(why);
        return r;
    };
    if (draining()) return fail("draining: no reload");
    const std::string kept = keep_restart_only(next);
    std::vector<net::Fd> reserved;  // port-0 listeners' new ports, until the workers hold them
    try {                           // a new address must be free before any worker tries it
        const Config running = config();
        auto known = [](const auto& list, const auto& l) {
            for (const auto& o : list)
                if (o.listen == l.listen && o.share_port == l.share_port) return true;
            return false;
        };
        for (const auto& l : next.worker.listeners)
            if (!l.share_port && l.listen.port() && !known(running.worker.listeners, l))
                net::check_port_free(l.name, l.listen, false);
        for (const auto& l : next.worker.udp_listeners)
            if (!l.share_port && l.listen.port() && !known(running.worker.udp_listeners, l))
                net::check_port_free(l.name, l.listen, true);
        reserved = reserve_ports(next, &running);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    share_listeners(next);
    auto settings = std::make_shared<const net::WorkerSettings>(next.worker);
    std::vector<std::future<std::string>> done;
    for (auto& w : workers_)
        done.push_back(w->reload(settings));
    std::string errors;
    for (auto& d : done) {
        std::string e = d.get();
        if (!e.empty() && errors.find(e) == std::string::npos)  // workers fail alike
            errors += (errors.empty() ? "" : "; ") + e;
    }
    configure_health(next);
    {
        std::lock_guard lock(config_mu_);
        config_ = std::move(next);
    }
    if (!errors.empty()) return fail(errors);
    reloads_ok_.fetch_add(1, std::memory_order_relaxed);
    r.ok = true;
    r.message = kept;
    return r;
}

Proxy::~Proxy() {
    stop();
}

// The backend and receive path the configuration asks for, resolved against what this kernel
// has (probed once, before any worker): one line says which runs and why; one that cannot run is
// an error. auto: io_uring where it is allowed and has a receive path, else epoll on Asio.
void Proxy::choose_receive_path() {
    const net::KernelFeatures f = net::probe_kernel();
    net::WorkerSettings& w = config_.worker;
    const net::RecvPath want = w.recv_path;
    const net::RecvPath got = f.resolve(want);
    const net::Backend asked = w.backend;
    if (asked == net::Backend::kIoUring && got == net::RecvPath::kAuto)
        throw std::runtime_error(std::string("backend: io_uring cannot run here: ") +
                                 f.why_not(want));
    if (asked == net::Backend::kEpoll ||
        (asked == net::Backend::kAuto && (got == net::RecvPath::kAuto || !f.io_uring()))) {
        if (want == net::RecvPath::kIncremental && asked == net::Backend::kAuto)
            throw std::runtime_error("io_uring.receive: incremental cannot run here: " +
                                     f.why_not(want));
        w.backend = net::Backend::kEpoll;
        w.recv_path = net::RecvPath::kFragments;
        const std::string why =
            asked == net::Backend::kEpoll ? "backend: epoll (configured)" : f.why_not(want);
        std::fprintf(stderr, "fragproxy: %s; running on epoll (Asio), receive: fragments\n",
                     why.c_str());
        return;
    }
    w.backend = net::Backend::kIoUring;
    w.recv_path = got;
    w.taskrun_probed = f.taskrun();  // every worker's ring: the probe's setup flags
    std::string why = want == net::RecvPath::kAuto ? "auto" : "configured";
    if (want == net::RecvPath::kAuto && got == net::RecvPath::kFragments)
        why += ": " + f.why_not(net::RecvPath::kIncremental);
    std::fprintf(stderr, "fragproxy: backend: io_uring; receive path: %s (%s)\n",
                 net::recv_path_name(got), why.c_str());
}

void Proxy::start() {
    choose_receive_path();
    configure_health(config_);
    auto settings = std::make_shared<const net::WorkerSettings>(config_.worker);
    for (unsigned i = 0; i < config_.workers; ++i) {
        workers_.push_back(
            std::make_unique<net::Worker>(settings, i, log_ ? log_->queue(i) : nullptr));
        try {
            workers_.back()->start();
        } catch (...) {
            workers_.pop_back();
            stop();
            throw;
        }
    }
    reserved_.clear();  // every worker's socket holds the port-0 listeners' ports now
}

void Proxy::drain() {
    draining_.store(true, std::memory_order_relaxed);
    for (auto& w : workers_)
        w->drain();
}

bool Proxy::drained() const {
    for (const auto& w : workers_)
        if (!w->drained()) return false;
    return true;
}

void Proxy::stop() {
    for (auto& w : workers_)
        w->stop();
}

void Proxy::report(std::ostream& out) const {
    // A counter summed over the workers: tcp(&net::TcpStats::accepted),
    // udp(&net::UdpStats::...).
    auto tcp = [&](Counter net::TcpStats::*c) {
        std::uint64_t n = 0;
        for (const auto& w : workers_)
            n += (w->tcp_stats().*c).get();
        return n;
    };
    auto udp = [&](Counter net::UdpStats::*c) {
        std::uint64_t n = 0;
        for (const auto& w : workers_)
            n += (w->udp_stats().*c).get();
        return n;
    };
    std::size_t pages = 0;
    long fds = 0;
    for (const auto& w : workers_) {
        pages += w->leaked_pages();
        fds += w->leaked_fds();
    }
    using net::TcpStats;
    out << "fragproxy: connections accepted " << tcp(&TcpStats::accepted) << ", refused "
        << tcp(&TcpStats::refused) << ", closed " << tcp(&TcpStats::closed) << " ("
        << tcp(&TcpStats::resets) << " reset, " << tcp(&TcpStats::cut)
        << " cut with data queued), upstream failures " << tcp(&TcpStats::upstream_failures)
        << "; bytes " << tcp(&TcpStats::bytes_client) << " client->upstream, "
        << tcp(&TcpStats::bytes_upstream) << " upstream->client\n"
        << "fragproxy: memory: " << tcp(&TcpStats::pressure_pauses)
        << " receives paused by the budget, " << tcp(&TcpStats::collapses) << " collapses ("
        << tcp(&TcpStats::collapsed_bytes) << " bytes copied), " << tcp(&TcpStats::send_stalls)
        << " send stalls reset; out of fds " << tcp(&TcpStats::fd_exhausted) << " times\n"
        << "fragproxy: at exit: pages in use " << pages << ", fds open " << fds << "\n";
    if (config().worker.udp_listeners.empty()) return;
    using net::UdpStats;
    out << "fragproxy: udp: datagrams in " << udp(&UdpStats::datagrams_in) << ", out "
        << udp(&UdpStats::datagrams_out) << "; sessions " << udp(&UdpStats::sessions)
        << ", expired " << udp(&UdpStats::sessions_expired) << ", refused "
        << udp(&UdpStats::sessions_refused) << "; dropped for want of buffers "
        << udp(&UdpStats::dropped_no_buffer) << ", upstream errors "
        << udp(&UdpStats::upstream_errors) << "; sendmsg calls " << udp(&UdpStats::sends)
        << " (GSO batches refused by the path " << udp(&UdpStats::gso_refused)
        << "); receives that waited for buffers " << udp(&UdpStats::buffer_waits) << "\n";
}

// {"tcp": {...}, "udp": {...}, "ring": {...}, "workers": N, "at_exit": {...}}: every counter
// summed over the workers (gauges too: pages_in_use is the sum of the workers' pools), high-water
// marks the largest of them. Read by tests and tools.
std::string Proxy::stats_json(bool at_exit) const {
    std::ostringstream o;
    // One section per stats list (net/base/stats.hpp): every stat by its key.
    auto section = [&](const char* title, const auto& defs, auto stats_of, auto&& extra) {
        o << "\"" << title << "\": {";
        const char* sep = "";
        for (const auto& d : defs) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                std::uint64_t v = (stats_of(*w).*d.field).get();
                n = d.type == net::StatType::kPeak ? std::max(n, v) : n + v;
            }
            o << sep << "\"" << d.json << "\": " << n;
            sep = ", ";
        }
        extra();
        o << "}";
    };
    o << "{\"workers\": " << workers_.size() << ", ";
    section(
        "tcp", net::kTcpStatDefs,
        [](const net::Worker& w) -> const net::TcpStats& { return w.tcp_stats(); },
        [&] {
            o << ", \"closed_by\": {";
            for (std::size_t how = 1; how < net::kAccessEnds; ++how) {
                std::uint64_t n = 0;
                for (const auto& w : workers_)
                    n += w->tcp_stats().closed_by[how].get();
                o << (how > 1 ? ", " : "") << "\"" << net::access_end_name(net::AccessEnd(how))
                  << "\": " << n;
            }
            o << "}";
        });
    o << ", ";
    section(
        "udp", net::kUdpStatDefs,
        [](const net::Worker& w) -> const net::UdpStats& { return w.udp_stats(); }, [] {});
    o << ", ";
    section(
        "ring", net::kRingStatDefs,
        [](const net::Worker& w) -> const net::RingStats& { return w.ring_stats(); }, [] {});
    if (at_exit) {
        std::size_t pages = 0;
        long fds = 0;
        for (const auto& w : workers_) {
            pages += w->leaked_pages();
            fds += w->leaked_fds();
        }
        o << ", \"at_exit\": {\"pages_in_use\": " << pages << ", \"fds_open\": " << fds << "}";
    }
    o << "}\n";
    return o.str();
}

bool Proxy::leaked() const {
    for (const auto& w : workers_)
        if (w->leaked_pages() || w->leaked_fds()) return true;
    return false;
}

}  // namespace fp::app
