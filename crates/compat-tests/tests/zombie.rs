//! A zombie commit at the wire (reliability G2): a member expired by its session timeout
//! commits with its old generation; the broker refuses it and the new owner's committed
//! offset stays.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use herald_broker::BrokerConfig;
use herald_broker::GroupConfig;
use herald_compat_tests::TestBroker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        Self { stream: TcpStream::connect(addr).await.expect("connect"), correlation: 0 }
    }

    async fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.correlation += 1;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("zombie-test")))
            .encode(&mut body, Req::header_version(version))
            .expect("header");
        request.encode(&mut body, version).expect("request");
        self.stream.write_all(&(body.len() as u32).to_be_bytes()).await.expect("send");
        self.stream.write_all(&body).await.expect("send");
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).await.expect("response length");
        let mut bytes = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut bytes).await.expect("response");
        let mut bytes = Bytes::from(bytes);
        let header = ResponseHeader::decode(&mut bytes, Resp::header_version(version)).expect("response header");
        assert_eq!(header.correlation_id, self.correlation);
        let response = Resp::decode(&mut bytes, version).expect("response body");
        assert!(!bytes.has_remaining());
        response
    }

    /// Joins (answering MEMBER_ID_REQUIRED) and syncs as the only member; returns (member id, generation).
    async fn join_alone(&mut self, group: &str) -> (String, i32) {
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_session_timeout_ms(1_000)
                .with_rebalance_timeout_ms(5_000)
                .with_member_id(StrBytes::from_string(member.to_string()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::from_static(b"")),
                ])
        };
        let first: JoinGroupResponse = self.call(ApiKey::JoinGroup, 5, &join("")).await;
        assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
        let joined: JoinGroupResponse = self.call(ApiKey::JoinGroup, 5, &join(&first.member_id)).await;
        assert_eq!(joined.error_code, 0);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone())
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default().with_member_id(joined.member_id.clone()),
            ]);
        let synced: SyncGroupResponse = self.call(ApiKey::SyncGroup, 3, &sync).await;
        assert_eq!(synced.error_code, 0);
        (joined.member_id.to_string(), joined.generation_id)
    }

    async fn commit(&mut self, group: &str, member: &str, generation: i32, offset: i64) -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("payments")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ]);
        let response: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, 8, &request).await;
        response.topics[0].partitions[0].error_code
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_commit_is_rejected_and_the_new_owners_offset_stands() {
    let config = BrokerConfig {
        groups: GroupConfig { min_session_timeout_ms: 500, initial_rebalance_delay_ms: 0, ..GroupConfig::default() },
        ..BrokerConfig::default()
    };
    let broker = TestBroker::start_with(config, Default::default()).await;
    broker.running().broker().create_topic("payments", Some(1), Default::default(), false).expect("topic");
    let group = "payment-service";

    let mut zombie = Client::connect(broker.addr()).await;
    let (old_member, old_generation) = zombie.join_alone(group).await;
    assert_eq!(zombie.commit(group, &old_member, old_generation, 5).await, 0, "a live member commits");

    // The member stops heartbeating (a GC pause, SIGSTOP) past its 1 s session.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let mut owner = Client::connect(broker.addr()).await;
    let (new_member, new_generation) = owner.join_alone(group).await;
    assert!(new_generation > old_generation);
    assert_eq!(owner.commit(group, &new_member, new_generation, 10).await, 0);

    // The zombie wakes up and commits with what it had.
    let refused = zombie.commit(group, &old_member, old_generation, 7).await;
    assert_eq!(refused, 25, "UNKNOWN_MEMBER_ID for an expired member");
    let stale = owner.commit(group, &new_member, old_generation, 3).await;
    assert_eq!(stale, 22, "ILLEGAL_GENERATION for a stale generation");
    let fetched = broker.running().broker().groups().offsets().get(group, "payments", 0).map(|c| c.offset);
    assert_eq!(fetched, Some(10), "the new owner's offset is untouched");
}
