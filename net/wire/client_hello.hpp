#pragma once
// The server name a TLS client asks for, read from its ClientHello (RFC 8446 4.1.2, RFC 6066 3)
// without terminating TLS: what `routes:` picks an upstream by. The ClientHello comes in TLS
// records (type 22, handshake) that may split it anywhere, over as many TCP segments; the
// handshake message is at most kClientHelloMax bytes. Strict: a record or message that is not
// what the specifications allow is invalid, never guessed at.
//
//   record     type 22, version 3.x, length 1..16384, then that many bytes of handshake data
//   handshake  type 1 (ClientHello), 24-bit length, then: legacy_version, random (32),
//              session_id (<= 32), cipher_suites (even, >= 2), compression_methods (>= 1),
//              and optionally extensions (each type, length, value; they fill the rest exactly;
//              no type twice). server_name (type 0): a list of (name_type, name); one host_name
//              of 1..255 letters, digits, '-', '_' or '.', no trailing dot.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fp::net {

// The largest ClientHello read (its handshake message, header included).
constexpr std::size_t kClientHelloMax = std::size_t{16} * 1024;
// The most bytes from the start of the connection examined for it: the message and the headers
// of the records carrying it, within reason (a client splitting it into hundreds of records is
// refused).
constexpr std::size_t kClientHelloScan = kClientHelloMax + 1024;

struct ClientHello {
    enum class Status : std::uint8_t {
        kIncomplete,  // a prefix of a valid ClientHello: more bytes needed
        kNotTls,      // the first bytes are not a TLS handshake record
        kInvalid,     // a TLS record, but not a valid ClientHello
        kDone
    };
    Status status = Status::kIncomplete;
    char name[256] = {};  // the host_name asked for, lower case; empty when none was sent
    std::uint8_t name_len = 0;
    const char* error = "";  // why it is invalid
    std::string_view server_name() const noexcept { return {name, name_len}; }
};

// `n` bytes from the start of the connection (at most kClientHelloScan are looked at).
ClientHello parse_client_hello(const std::uint8_t* data, std::size_t n) noexcept;

}  // namespace fp::net
