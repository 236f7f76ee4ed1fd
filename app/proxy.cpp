#include "app/proxy.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "net/engine/features.hpp"
#include "net/engine/reactor.hpp"
#include "net/policy/listen_socket.hpp"

namespace fp::app {
namespace {

// Every counter by the name it has in --stats-json (and the names the exit report draws from).
template <class Stats>
struct Field {
    const char* name;
    Counter Stats::*field;
    bool peak = false;  // a high-water mark: the largest of the workers', not their sum
};
using W = net::TcpStats;
using U = net::UdpStats;
constexpr Field<W> kTcpFields[] = {
    {"accepted", &W::accepted},
    {"refused", &W::refused},
    {"closed", &W::closed},
    {"resets", &W::resets},
    {"upstream_failures", &W::upstream_failures},
    {"bytes_client_to_upstream", &W::bytes_client},
    {"bytes_upstream_to_client", &W::bytes_upstream},
    {"idle_timeouts", &W::idle_timeouts},
    {"connect_timeouts", &W::connect_timeouts},
    {"recv_buffer_waits", &W::starved},
    {"cut_with_data", &W::cut},
    {"send_stalls", &W::send_stalls},
    {"pressure_pauses", &W::pressure_pauses},
    {"collapses", &W::collapses},
    {"collapsed_bytes", &W::collapsed_bytes},
    {"collapse_failures", &W::collapse_failures},
    {"buffer_clamps", &W::clamps},
    {"buffer_unclamps", &W::unclamps},
    {"fd_exhausted", &W::fd_exhausted},
    {"accept_pauses", &W::accept_pauses},
    {"direct_sides", &W::direct_sides},
    {"fd_installs", &W::fd_installs},
    {"sockopt_failures", &W::sockopt_failures},
    {"fin_by_close", &W::fin_by_close},
    {"close_cancels", &W::close_cancels},
    {"zc_sends", &W::zc_sends},
    {"zc_copied", &W::zc_copied},
    {"recv_bundles", &W::recv_bundles},
    {"pages_in_use", &W::pages_in_use},
    {"queued_bytes", &W::queued_bytes},
    {"pressure_level", &W::pressure_level},
    {"live_connections", &W::live},
    {"queue_peak_bytes", &W::queue_peak, true},
    {"illegal_transitions", &W::illegal_transitions},
};
using R = net::RingStats;
constexpr Field<R> kRingFields[] = {
    {"sqes", &R::sqes},
    {"cqes", &R::cqes},
    {"enters", &R::enters},
    {"batch_waits", &R::batch_waits},
};
constexpr Field<U> kUdpFields[] = {
    {"datagrams_in", &U::datagrams_in},
    {"datagrams_out", &U::datagrams_out},
    {"sessions", &U::sessions},
    {"sessions_expired", &U::sessions_expired},
    {"sessions_refused", &U::sessions_refused},
    {"dropped_no_buffer", &U::dropped_no_buffer},
    {"dropped_responses", &U::dropped_responses},
    {"upstream_errors", &U::upstream_errors},
    {"denied", &U::denied},
    {"sends", &U::sends},
    {"gso_refused", &U::gso_refused},
    {"buffer_waits", &U::buffer_waits},
    {"live_sessions", &U::live},
    {"illegal_transitions", &U::illegal_transitions},
};

}  // namespace

Proxy::Proxy(const Config& config, AccessLog* log) : config_(config), log_(log) {
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
    try {  // a new address must be free before any worker tries it
        const Config running = config();
        auto known = [](const auto& list, const auto& l) {
            for (const auto& o : list)
                if (o.listen == l.listen && o.share_port == l.share_port) return true;
            return false;
        };
        for (const auto& l : next.worker.listeners)
            if (!l.share_port && !known(running.worker.listeners, l))
                net::check_port_free(l.name, l.listen, false);
        for (const auto& l : next.worker.udp_listeners)
            if (!l.share_port && !known(running.worker.udp_listeners, l))
                net::check_port_free(l.name, l.listen, true);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    share_listeners(next);
    auto settings = std::make_shared<const net::WorkerSettings>(next.worker);
    std::vector<std::future<std::string>> done;
    for (auto& w : workers_)
        done.push_back(w->reload(settings));
    std::string errors;
    for (unsigned i = 0; i < done.size(); ++i) {
        std::string e = done[i].get();
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
    for (const auto& l : config_.worker.listeners)
        if (!l.share_port) net::check_port_free(l.name, l.listen, false);
    for (const auto& l : config_.worker.udp_listeners)
        if (!l.share_port) net::check_port_free(l.name, l.listen, true);
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
    auto section = [&](const char* title, const auto& fields, auto stats_of) {
        o << "\"" << title << "\": {";
        const char* sep = "";
        for (const auto& f : fields) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                std::uint64_t v = (stats_of(*w).*f.field).get();
                n = f.peak ? std::max(n, v) : n + v;
            }
            o << sep << "\"" << f.name << "\": " << n;
            sep = ", ";
        }
        o << "}";
    };
    o << "{\"workers\": " << workers_.size() << ", ";
    section("tcp", kTcpFields, [](const net::Worker& w) -> const W& { return w.tcp_stats(); });
    o << ", ";
    section("udp", kUdpFields, [](const net::Worker& w) -> const U& { return w.udp_stats(); });
    o << ", ";
    section("ring", kRingFields, [](const net::Worker& w) -> const R& { return w.ring_stats(); });
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
