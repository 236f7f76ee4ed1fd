#include "net/wire/client_hello.hpp"

#include <algorithm>
#include <bitset>
#include <cstring>

namespace fp::net {
namespace {

constexpr std::uint8_t kHandshakeRecord = 22;
constexpr std::uint8_t kClientHelloType = 1;
constexpr std::size_t kRecordHeader = 5;
constexpr std::size_t kRecordMax = 16384;  // a plaintext record's fragment
constexpr std::uint16_t kServerNameExt = 0;

ClientHello verdict(ClientHello::Status s, const char* why = "") {
    ClientHello h;
    h.status = s;
    h.error = why;
    return h;
}

ClientHello invalid(const char* why) {
    return verdict(ClientHello::Status::kInvalid, why);
}

std::uint32_t be16(const std::uint8_t* p) {
    return std::uint32_t(p[0]) << 8 | p[1];
}

// Reads a message front to back; any read past its end fails it (and every read after).
class Reader {
  public:
    Reader(const std::uint8_t* p, std::size_t n) : p_(p), left_(n) {}
    bool ok() const { return ok_; }
    std::size_t left() const { return left_; }
    std::uint32_t u8() { return number(1); }
    std::uint32_t u16() { return number(2); }
    std::uint32_t u24() { return number(3); }
    const std::uint8_t* take(std::size_t n) {
        if (!ok_ || n > left_) {
            ok_ = false;
            return nullptr;
        }
        const std::uint8_t* at = p_;
        p_ += n;
        left_ -= n;
        return at;
    }

  private:
    std::uint32_t number(std::size_t n) {
        const std::uint8_t* at = take(n);
        std::uint32_t v = 0;
        for (std::size_t i = 0; at && i < n; ++i)
            v = v << 8 | at[i];
        return v;
    }
    const std::uint8_t* p_;
    std::size_t left_;
    bool ok_ = true;
};

// server_name's extension_data: a non-empty list of (name_type, name); one host_name at most.
const char* read_server_name(const std::uint8_t* data, std::size_t n, ClientHello& out) {
    Reader r(data, n);
    const std::uint32_t list = r.u16();
    if (!r.ok() || list == 0 || list != r.left()) return "server_name: a list that is not its size";
    bool host = false;
    while (r.left() > 0) {
        const std::uint32_t type = r.u8();
        const std::uint32_t len = r.u16();
        const std::uint8_t* name = r.take(len);
        if (!r.ok()) return "server_name: an entry past the list's end";
        if (type != 0) continue;  // other name types are not defined: skipped
        if (host) return "server_name: two host names";
        host = true;
        if (len == 0 || len > 255) return "server_name: a host name of 0 or more than 255 bytes";
        if (name[len - 1] == '.') return "server_name: a host name with a trailing dot";
        for (std::uint32_t i = 0; i < len; ++i) {
            char c = char(name[i]);
            if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
            const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '_' || c == '.';
            if (!ok) return "server_name: a host name with a byte not allowed in one";
            out.name[i] = c;
        }
        out.name_len = std::uint8_t(len);
    }
    return nullptr;
}

// The ClientHello's body (after its 4-byte handshake header).
ClientHello read_body(const std::uint8_t* body, std::size_t n) {
    Reader r(body, n);
    const std::uint32_t version = r.u16();
    r.take(32);  // random
    const std::uint32_t session = r.u8();
    r.take(session);
    const std::uint32_t suites = r.u16();
    r.take(suites);
    const std::uint32_t compression = r.u8();
    r.take(compression);
    if (!r.ok()) return invalid("ClientHello: shorter than its fixed fields");
    if (version >> 8 != 3) return invalid("ClientHello: a legacy_version that is not 3.x");
    if (session > 32) return invalid("ClientHello: a session id longer than 32 bytes");
    if (suites < 2 || suites % 2) return invalid("ClientHello: cipher suites of an odd or no size");
    if (compression < 1) return invalid("ClientHello: no compression method");
    ClientHello h = verdict(ClientHello::Status::kDone);
    if (r.left() == 0) return h;  // no extensions (TLS 1.2 and before may send none)
    const std::uint32_t total = r.u16();
    if (!r.ok() || total != r.left()) return invalid("ClientHello: extensions not filling it");
    std::bitset<65536> seen;
    while (r.left() > 0) {
        const std::uint32_t type = r.u16();
        const std::uint32_t len = r.u16();
        const std::uint8_t* value = r.take(len);
        if (!r.ok()) return invalid("ClientHello: an extension past its end");
        if (seen[type]) return invalid("ClientHello: an extension sent twice");
        seen[type] = true;
        if (type != kServerNameExt) continue;
        if (const char* why = read_server_name(value, len, h)) return invalid(why);
    }
    return h;
}

}  // namespace

ClientHello parse_client_hello(const std::uint8_t* data, std::size_t n) noexcept {
    n = std::min(n, kClientHelloScan);
    // The first record's header says whether this is TLS at all.
    if (n >= 1 && data[0] != kHandshakeRecord) return verdict(ClientHello::Status::kNotTls);
    if (n >= 2 && data[1] != 3) return verdict(ClientHello::Status::kNotTls);
    if (n >= 3 && data[2] > 4) return verdict(ClientHello::Status::kNotTls);
    // The handshake message, gathered from the records that carry it.
    std::uint8_t msg[kClientHelloMax];
    std::size_t have = 0, need = 0;  // need: 4 + its length, once its header is in
    std::size_t p = 0;
    while (need == 0 || have < need) {
        if (p + kRecordHeader > n) {
            if (p < n && data[p] != kHandshakeRecord)
                return invalid("a record that is not a handshake inside the ClientHello");
            if (p + 1 < n && data[p + 1] != 3) return invalid("a record version that is not 3.x");
            return n == kClientHelloScan ? invalid("ClientHello: split into too many records")
                                         : ClientHello{};
        }
        if (data[p] != kHandshakeRecord)
            return invalid("a record that is not a handshake inside the ClientHello");
        if (data[p + 1] != 3) return invalid("a record version that is not 3.x");
        const std::size_t len = be16(data + p + 3);
        if (len == 0 || len > kRecordMax) return invalid("a record of 0 or more than 16384 bytes");
        const std::size_t avail = std::min(len, n - p - kRecordHeader);
        const std::size_t want = need ? need - have : kClientHelloMax - have;
        const std::size_t copy = std::min(avail, want);
        std::memcpy(msg + have, data + p + kRecordHeader, copy);
        have += copy;
        if (need == 0 && have >= 4) {
            if (msg[0] != kClientHelloType) return invalid("a handshake that is not a ClientHello");
            need = 4 + (std::size_t(msg[1]) << 16 | std::size_t(msg[2]) << 8 | msg[3]);
            if (need > kClientHelloMax) return invalid("ClientHello: longer than 16 KiB");
            if (have > need) have = need;  // (another message coalesced after it: not read)
        }
        if (need && have >= need) break;
        if (avail < len)  // the record goes on: more to come, unless this is all we look at
            return n == kClientHelloScan ? invalid("ClientHello: split into too many records")
                                         : ClientHello{};
        p += kRecordHeader + len;
    }
    return read_body(msg + 4, need - 4);
}

}  // namespace fp::net
