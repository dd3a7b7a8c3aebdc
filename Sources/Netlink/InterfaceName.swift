/// Checks of names and values done before a request is sent, so that a bad
/// argument is reported in swarmnet's words and nothing reaches the kernel.
enum Validate {
    /// IFNAMSIZ is 16 including the NUL: a name has at most 15 bytes.
    static let maximumInterfaceNameLength = 15

    static func interfaceName(_ name: String) throws {
        let length = name.utf8.count
        if length == 0 {
            throw NetlinkError.invalidArgument("interface name is empty")
        }
        if length > maximumInterfaceNameLength {
            throw NetlinkError.invalidArgument("interface name '\(name)' is \(length) bytes long; the kernel allows at most \(maximumInterfaceNameLength)")
        }
        if name == "." || name == ".." || name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
            throw NetlinkError.invalidArgument("interface name '\(name)' may not be '.' or '..' or contain '/', ':' or white space")
        }
    }

    /// VXLAN network identifiers are 24 bits.
    static let vniRange: ClosedRange<UInt32> = 0...(1 << 24 - 1)

    static func vni(_ vni: UInt32) throws {
        guard vniRange.contains(vni) else {
            throw NetlinkError.invalidArgument("VNI \(vni) is out of range; a VXLAN network identifier is 0...\(vniRange.upperBound)")
        }
    }

    static func mtu(_ mtu: UInt32) throws {
        guard (68...65535).contains(mtu) else {
            throw NetlinkError.invalidArgument("MTU \(mtu) is out of range 68...65535")
        }
    }
}
