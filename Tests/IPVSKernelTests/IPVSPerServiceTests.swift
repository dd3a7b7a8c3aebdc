import Addressing
import Foundation
import LoadBalancing
import Namespaces
import Testing

/// `reconcile(service:to:)` on the real kernel: one service read (a
/// GET_SERVICE and a destination dump) and changed, the others untouched,
/// as ipvsadm -Ln shows.
@Suite(.enabled(if: IPVSEnvironment.shouldRun), .serialized)
struct IPVSPerServiceTests {
    let web = ServiceKey.address(ip("10.0.0.5"), .tcp, port: 80)
    let dns = ServiceKey.address(ip("10.0.0.6"), .udp, port: 53)
    let mark = ServiceKey.firewallMark(42, family: .ipv4)

    @Test func changesOneServiceAndLeavesTheOthers() throws {
        try IPVSTestHost.withNamespaces(1) { namespaces in
            let ipvs = try IPVS(namespace: namespaces[0])
            let others = [VirtualService(key: dns, realServers: [rs("10.0.1.2", 53)]),
                          VirtualService(key: mark, scheduler: .sourceHashing, realServers: [rs("10.0.1.5", 0)])]
            var service = VirtualService(key: web, realServers: [rs("10.0.1.2"), rs("10.0.1.3")])
            try ipvs.reconcile(to: others + [service])

            #expect(try ipvs.service(web)?.scheduler == .roundRobin)
            #expect(try ipvs.service(.address(ip("10.0.0.9"), .tcp, port: 80)) == nil)

            service.realServers.append(rs("10.0.1.4"))
            #expect(try ipvs.reconcile(service: web, to: service).operations == [.addRealServer(rs("10.0.1.4"), service: web)])
            service.realServers.removeFirst()
            #expect(try ipvs.reconcile(service: web, to: service).operations == [
                .quiesceRealServer(rs("10.0.1.2", weight: 0), service: web),
                .deleteRealServer(rs("10.0.1.2").key, service: web),
            ])
            #expect(try ipvs.reconcile(service: web, to: service).isEmpty)
            let expected = (others + [service]).map(\.sorted).sorted { $0.key < $1.key }
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]) == expected)

            // A new service and a removed one; a firewall-mark service too.
            let new = VirtualService(key: .address(ip("10.0.0.7"), .tcp, port: 443), realServers: [rs("10.0.1.9", 443)])
            #expect(try ipvs.reconcile(service: new.key, to: new).operations.count == 2)
            #expect(try ipvs.reconcile(service: mark, to: nil).operations == [.deleteService(mark)])
            #expect(try ipvs.reconcile(service: mark, to: nil).isEmpty)
            #expect(try IPVSTestHost.ipvsadm(namespaces[0])
                == [others[0], service, new].map(\.sorted).sorted { $0.key < $1.key })
            // A desired service under another key is refused before anything is sent.
            #expect(throws: LoadBalancerError.self) { try ipvs.reconcile(service: web, to: new) }
        }
    }
}
