import Testing
@testable import DockerAPI

/// The API version prefix the stock CLI puts before every path, and the
/// query, as the router splits them.
@Suite struct RequestPathTests {
    @Test(arguments: [
        ("/v1.41/networks/create", "/networks/create"),
        ("/v1.47/services/web/update", "/services/web/update"),
        ("/_ping", "/_ping"),
        ("/v1.41", "/v1.41"),           // no path after the version: not a prefix
        ("/v1/networks", "/v1/networks"), // not a version
        ("/vx.41/networks", "/vx.41/networks"),
        ("/v1.41networks", "/v1.41networks"),
        ("/networks/v1.41/x", "/networks/v1.41/x"),
    ])
    func theVersionPrefixIsRemovedOnlyWhenWhole(uri: String, path: String) {
        #expect(DockerRouter.split(uri).path == path)
    }

    @Test func theQueryIsDecoded() {
        let (path, query) = DockerRouter.split("/v1.41/containers/json?all=1&filters=%7B%22name%22%3A%5B%22a+b%22%5D%7D")
        #expect(path == "/containers/json")
        #expect(query["all"] == "1")
        #expect(query["filters"] == #"{"name":["a b"]}"#)
    }
}
