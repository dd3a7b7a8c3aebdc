#if canImport(Glibc)
import Glibc
#endif
import CLibNL

/// Names of kernel constants (flags, states, scopes, protocols) from
/// libnl-route-3's tables, so the debug commands use the words `ip` users
/// know rather than numbers.
public enum KernelNames {
    /// Link flags as `ip link` shows them: RUNNING is folded into
    /// NO-CARRIER (up but not running), and libnl's "lowerup" is LOWER_UP.
    public static func linkFlags(_ flags: UInt32) -> [String] {
        let up = flags & UInt32(IFF_UP) != 0
        let running = flags & UInt32(IFF_RUNNING) != 0
        let names = split(call(Int32(bitPattern: flags & ~UInt32(IFF_RUNNING)), rtnl_link_flags2str))
            .map { $0 == "lowerup" ? "LOWER_UP" : $0.uppercased() }
        return (up && !running ? ["NO-CARRIER"] : []) + names
    }

    public static func neighbourState(_ state: UInt16) -> [String] {
        split(call(Int32(state), rtnl_neigh_state2str)).map { $0.uppercased() }
    }

    public static func neighbourFlags(_ flags: UInt8) -> [String] {
        split(call(Int32(flags), rtnl_neigh_flags2str))
    }

    public static func scope(_ scope: UInt8) -> String { call(Int32(scope), rtnl_scope2str) }
    public static func routeProtocol(_ value: UInt8) -> String { call(Int32(value), rtnl_route_proto2str) }
    public static func routeType(_ value: UInt8) -> String { call(Int32(value), nl_rtntype2str) }
    public static func addressFlags(_ flags: UInt32) -> [String] { split(call(Int32(bitPattern: flags), rtnl_addr_flags2str)) }

    private static func call(_ value: Int32, _ function: (Int32, UnsafeMutablePointer<CChar>?, Int) -> UnsafeMutablePointer<CChar>?) -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        return buffer.withUnsafeMutableBufferPointer { raw in
            _ = function(value, raw.baseAddress, raw.count)
            return String(cString: raw.baseAddress!)
        }
    }

    private static func split(_ text: String) -> [String] {
        text.split(separator: ",").map(String.init).filter { !$0.isEmpty && $0 != "none" }
    }
}
