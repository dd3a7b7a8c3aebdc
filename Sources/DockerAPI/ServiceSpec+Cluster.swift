import Cluster

extension ServiceRequest {
    /// Docker's service spec in the fields the cluster's allocation rules
    /// use (VIPs, published ports, networks): the edge's translation.
    public init(_ spec: ServiceSpec) {
        let attachments = spec.taskTemplate?.networks ?? spec.networks ?? []
        self.init(
            name: spec.name, labels: spec.labels ?? [:], image: spec.taskTemplate?.containerSpec?.image ?? "",
            replicas: spec.mode?.replicated?.replicas,
            networks: attachments.map {
                NetworkAttachment(target: $0.target, requestedVIP: $0.driverOpts?[NetworkAttachmentConfig.vipOption])
            },
            endpointMode: spec.endpointSpec?.mode,
            ports: (spec.endpointSpec?.ports ?? []).map {
                Port(name: $0.name, protocol: $0.protocol, targetPort: $0.targetPort, publishedPort: $0.publishedPort,
                     publishMode: $0.publishMode)
            })
    }
}
