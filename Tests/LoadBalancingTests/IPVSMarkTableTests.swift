import Addressing
import Foundation
import Testing
@testable import LoadBalancing

/// The IPVS back end's mark table read back from nft's JSON (a listing
/// recorded from nft 1.0.6 on this machine's kernel): its marks, and
/// whether its chains are exactly the ones swarmnet writes, rule for rule.
@Suite struct IPVSMarkTableTests {
    static let listing = #"""
{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "t", "handle": 1}},
{"map": {"family": "ip", "name": "vip-marks", "table": "t", "type": ["ipv4_addr", "inet_proto"], "handle": 4, "map": "mark", "elem": [[{"concat": ["10.96.0.9", "udp"]}, 1398210561]]}},
{"map": {"family": "ip", "name": "port-marks", "table": "t", "type": ["inet_proto", "inet_service"], "handle": 5, "map": "mark", "elem": [[{"concat": ["tcp", 8080]}, 1398210562]]}},
{"set": {"family": "ip", "name": "masquerade-marks", "table": "t", "type": "mark", "handle": 6, "elem": [1398210562]}},
{"chain": {"family": "ip", "table": "t", "name": "output", "handle": 1, "type": "filter", "hook": "output", "prio": -150, "policy": "accept"}},
{"chain": {"family": "ip", "table": "t", "name": "prerouting", "handle": 2, "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}},
{"chain": {"family": "ip", "table": "t", "name": "postrouting", "handle": 3, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
{"rule": {"family": "ip", "table": "t", "chain": "output", "handle": 7, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"map": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}]}, "data": "@vip-marks"}}}}]}},
{"rule": {"family": "ip", "table": "t", "chain": "output", "handle": 8, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"map": {"key": {"concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@port-marks"}}}}]}},
{"rule": {"family": "ip", "table": "t", "chain": "prerouting", "handle": 9, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"map": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}]}, "data": "@vip-marks"}}}}]}},
{"rule": {"family": "ip", "table": "t", "chain": "prerouting", "handle": 10, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"map": {"key": {"concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@port-marks"}}}}]}},
{"rule": {"family": "ip", "table": "t", "chain": "postrouting", "handle": 11, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": "@masquerade-marks"}}, {"masquerade": null}]}}
]}
"""#

    let table = IPVSMarkTable(name: "t", hooks: .routingMesh, masqueradesPublishedPorts: true)

    @Test func theRecordedTableReadsBackWithItsMarksAndIsIntact() throws {
        let parsed = try IPVSMarkTable.parse(json: Self.listing, table: "t")
        #expect(parsed.contents.marks == [
            .everyPort(try IPv4Address(parsing: "10.96.0.9"), .udp): 0x5357_0001,
            .publishedPort(.tcp, 8080): 0x5357_0002,
        ])
        #expect(parsed.contents.masquerade == [0x5357_0002])
        #expect(table.isIntact(chains: parsed.chains, hooks: parsed.hooks))
        // The output-only table of a workload has no prerouting or postrouting chain.
        let workload = IPVSMarkTable(name: "t", hooks: .output, masqueradesPublishedPorts: false)
        #expect(!workload.isIntact(chains: parsed.chains, hooks: parsed.hooks))
    }

    /// Edits that keep every chain's rule count: each is noticed.
    @Test(arguments: [
        ("\"right\": \"new\"", "\"right\": \"established\""),
        ("\"data\": \"@vip-marks\"", "\"data\": \"@port-marks\""),
        ("\"len\": 8", "\"len\": 16"),
        ("{\"masquerade\": null}", "{\"accept\": null}"),
    ])
    func aRuleEditedInPlaceIsNoticed(edit: (String, String)) throws {
        #expect(Self.listing.contains(edit.0))
        let edited = Self.listing.replacingOccurrences(of: edit.0, with: edit.1)
        let parsed = try IPVSMarkTable.parse(json: edited, table: "t")
        #expect(!table.isIntact(chains: parsed.chains, hooks: parsed.hooks), "\(edit)")
    }
}
