import Foundation
import SystemBasics
import Testing

/// What the daemon took from Foundation, checked against Foundation itself
/// where it has the same thing (this test process links it; the daemon
/// does not).
struct SystemBasicsTests {
    @Test func jsonObjectsParseAsJSONSerializationParsedThem() throws {
        let text = #"{"nftables": [{"table": {"name": "t", "handle": 3}}, {"map": {"elem": [[{"concat": ["10.0.0.1", "tcp"]}, 7]], "neg": -2.5e1, "on": true, "off": false, "none": null}}], "s": "a\"b\\c\/d\n\u00e9\ud83d\ude00"}"#
        let object = try #require(try JSONObject.parse(text) as? [String: Any])
        let items = try #require(object["nftables"] as? [[String: Any]])
        #expect((items[0]["table"] as? [String: Any])?["handle"] as? Int == 3)
        let map = try #require(items[1]["map"] as? [String: Any])
        let element = try #require((map["elem"] as? [[Any]])?.first)
        #expect(((element[0] as? [String: Any])?["concat"] as? [String]) == ["10.0.0.1", "tcp"])
        #expect(element[1] as? Int == 7)
        #expect(map["neg"] as? Double == -25)
        #expect(map["on"] as? Bool == true && map["off"] as? Bool == false && map["none"] is JSONNull)
        let string = try #require(object["s"] as? String)
        let foundation = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(string == foundation["s"] as? String && string == "a\"b\\c/d\né😀")
    }

    @Test func malformedJSONIsRefusedWithItsOffset() {
        for text in ["", "{", #"{"a" 1}"#, "[1,]", "tru", #""\x""#, "[1] 2", "\"a\u{01}\"", "01x",
                     String(repeating: "[", count: JSONObject.maximumDepth + 1)] {
            #expect(throws: JSONObject.Malformed.self, "\(text.prefix(20))") { _ = try JSONObject.parse(text) }
        }
        #expect((try? JSONObject.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100))) != nil)
    }

    @Test func percentDecodingAndTrimmingMatchFoundation() {
        for text in ["a%20b", "%2Frun%2Fx", "caf%C3%A9", "plain", "%", "%2", "%zz", "%FF"] {
            #expect(text.percentDecoded() == text.removingPercentEncoding, "\(text)")
        }
        for text in ["  a b \t\n", "\n\n", "", "x", " \tx"] {
            #expect(text.trimmed() == text.trimmingCharacters(in: .whitespacesAndNewlines), "\(text)")
        }
        #expect("..a.b..".trimming(".") == "a.b")
        #expect("[::1]".trimming("[]") == "::1")
    }

    /// As NSString's deletingLastPathComponent gave them (which itself
    /// traps on a one-component relative path, so no comparison here).
    @Test func directoryNames() {
        let expected = ["/a/b": "/a", "/a/b/": "/a", "/a": "/", "/": "/", "a": "", "a/b": "a", "/run/x/api.sock": "/run/x"]
        for (path, directory) in expected {
            #expect(directoryName(path) == directory, "\(path)")
        }
    }

    @Test func aConditionWaitEndsBySignalOrTimeout() async throws {
        let condition = Condition()
        let clock = ContinuousClock()
        let start = clock.now
        condition.lock()
        condition.wait(for: .milliseconds(50))
        condition.unlock()
        #expect(start.duration(to: clock.now) >= .milliseconds(50))

        // A signal from another thread ends a long wait.
        let signalled = Lock()
        nonisolated(unsafe) var flag = false
        startThread(named: "signaller") {
            usleep(20_000)
            condition.lock()
            signalled.withLock { flag = true }
            condition.signal()
            condition.unlock()
        }
        let waitStart = clock.now
        condition.lock()
        while !signalled.withLock({ flag }) { condition.wait(for: .seconds(10)) }
        condition.unlock()
        #expect(waitStart.duration(to: clock.now) < .seconds(5))
    }
}
