import Foundation
import Testing
import Addressing
import LoadBalancing
@testable import Agent

/// `swarmnetd --lb-backend`: which back end the daemon picks, and how each
/// role's balancer is laid out. The kernel is asked only whether IPVS
/// answers (this machine's kernel has none; the IPVS VM runs the daemon
/// with IPVS in IPVSDaemonTests).
@Suite struct BalancerChoiceTests {
    @Test func autoFallsBackToNftablesWithTheReasonAndIpvsRefusesToStart() throws {
        let available = IPVS.availability().isAvailable
        let auto = try NodeDaemon.resolveBalancer(.auto)
        if available {
            guard case .ipvs = auto else { Issue.record("IPVS answers, but auto chose \(auto)"); return }
            guard case .ipvs = try NodeDaemon.resolveBalancer(.ipvs) else { Issue.record("--lb-backend ipvs"); return }
        } else {
            guard case .nftables(let reason) = auto else { Issue.record("no IPVS, but auto chose \(auto)"); return }
            #expect(reason.hasPrefix("IPVS unavailable: "), "\(reason)")
            #expect(throws: (any Error).self) { try NodeDaemon.resolveBalancer(.ipvs) }
            do {
                _ = try NodeDaemon.resolveBalancer(.ipvs)
            } catch {
                #expect("\(error)".contains("--lb-backend ipvs: IPVS cannot be used here"), "\(error)")
            }
        }
        #expect(try NodeDaemon.resolveBalancer(.nftables) == .nftables(reason: "chosen with --lb-backend nftables"))
    }

    @Test func ipvsRolesHaveTheirOwnMarkRangesAndTables() {
        let kind = BalancerKind.ipvs(version: "1.2.1")
        var bases: [UInt32] = []
        var tables: [String] = []
        for role in [BalancerRole.workload, .mesh, .hostPorts] {
            guard case .ipvs(let configuration) = kind.settings(for: role, localBackends: []) else {
                Issue.record("\(role) is not IPVS")
                continue
            }
            bases.append(configuration.markBase)
            tables.append(configuration.markTable)
            // Only the workload's namespace is swarmnet's to own whole.
            #expect(configuration.ownsAddressServices == (role == .workload))
            // Only the routing mesh masquerades; host-mode ports keep the client's address.
            #expect(configuration.masqueradePublishedPorts == (role == .mesh))
        }
        #expect(Set(bases).count == 3 && bases.allSatisfy { $0 & 0xffff == 0 })
        #expect(tables == ["swarmnet-ipvs", "swarmnet-mesh-ipvs", "swarmnet-hostports-ipvs"])
        // In the host's namespace the mesh owns the VIPs on ingress, and
        // no other VIP:port service.
        let ingress = try! IPPrefix(parsing: "10.0.0.0/24")
        for role in [BalancerRole.workload, .mesh, .hostPorts] {
            guard case .ipvs(let configuration) = kind.settings(for: role, localBackends: [], ingressSubnet: ingress) else { continue }
            #expect(configuration.ownedAddresses == (role == .mesh ? [ingress] : []), "\(role)")
            #expect(configuration.owns(try! IPAddress(parsing: "10.0.0.7")) == (role != .hostPorts), "\(role)")
            #expect(configuration.owns(try! IPAddress(parsing: "10.9.0.7")) == (role == .workload), "\(role)")
        }
        // The nftables layout of the same roles keeps its table names.
        let nftables = BalancerKind.nftables(reason: "test")
        #expect(nftables.settings(for: .mesh, localBackends: []).label == "nftables ip swarmnet-mesh")
        #expect(kind.settings(for: .workload, localBackends: []).label == "ipvs (marks: ip swarmnet-ipvs)")
    }
}
