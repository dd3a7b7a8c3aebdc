import FoundationEssentials
import Raft
import RaftStorage

extension RaftServer {
    /// Rewrites `dataDirectory` as a group whose only voter is `id`, holding
    /// `data` (the store as this member applied it, at `index`): what
    /// `docker swarm init --force-new-cluster` does for a manager whose
    /// quorum is gone for good. The old directory is kept beside it
    /// (`NAME.old-SECONDS`), for inspection. Call it with the member stopped.
    public static func forceNewCluster(dataDirectory: String, id: NodeID, snapshot data: [UInt8], index: Index, term: Term) throws {
        let files = FileManager.default
        if files.fileExists(atPath: dataDirectory) {
            try files.moveItem(atPath: dataDirectory, toPath: dataDirectory + ".old-\(Int(Date().timeIntervalSince1970))")
        }
        let (storage, _) = try DiskStorage.open(directory: dataDirectory)
        let snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: term, confState: ConfState(voters: [id])), data: data)
        try storage.save(hardState: HardState(term: term, vote: noNode, commit: index), entries: [], snapshot: snapshot)
    }
}
