// FragQueue and NodePool: the send queues' nodes, carved lazily, recycled, bounded.
#include <doctest/doctest.h>

#include <vector>

#include "net/tcp/frag_queue.hpp"

using namespace fp::net;

TEST_CASE("NodePool hands out at most its capacity and takes nodes back") {
    NodePool pool(3);
    CHECK(pool.available() == 3);
    FragNode* a = pool.get();
    FragNode* b = pool.get();
    FragNode* c = pool.get();
    REQUIRE((a && b && c));
    CHECK(pool.get() == nullptr);  // exhausted: the caller closes, never drops silently
    CHECK(pool.available() == 0);
    CHECK(pool.in_use() == 3);
    a->frag = reinterpret_cast<std::byte*>(a);
    a->sent = 5;
    pool.put(a);
    CHECK(pool.available() == 1);
    FragNode* again = pool.get();
    CHECK(again == a);  // reused, and reset
    CHECK(again->frag == nullptr);
    CHECK(again->sent == 0);
    CHECK_FALSE(again->compact);
    pool.put(b);
    pool.put(c);
    pool.put(again);
    CHECK(pool.in_use() == 0);
}

TEST_CASE("FragQueue keeps order and counts the bytes not yet sent") {
    NodePool pool(8);
    FragQueue q;
    CHECK(q.empty());
    std::byte buf[64];
    std::vector<FragNode*> pushed;
    for (std::uint32_t i = 0; i < 4; ++i) {
        FragNode* n = pool.get();
        n->frag = buf + i * 16;
        n->len = 10 + i;
        q.push(n);
        pushed.push_back(n);
    }
    CHECK(q.bytes == 10 + 11 + 12 + 13);
    CHECK(q.head == pushed[0]);
    CHECK(q.tail == pushed[3]);
    for (FragNode* expect : pushed) {
        FragNode* n = q.pop();
        CHECK(n == expect);
        pool.put(n);
    }
    CHECK(q.empty());
    CHECK(q.tail == nullptr);
    FragNode* n = pool.get();  // a queue emptied and refilled links from the start again
    n->len = 3;
    q.push(n);
    CHECK(q.head == n);
    CHECK(q.tail == n);
    CHECK(n->next == nullptr);
}
