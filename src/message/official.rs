//! The new event types and JSON pushes, parsed from WeChat's official examples.
//!
//! WeChat's pages cannot be fetched from the build machine; each example is WeChat's own
//! sample as other SDKs and WeChat's developer community quote it, and the comment above it
//! names where it was read. Where WeChat's docs and its real pushes disagree (the JSON
//! `List` of subscribe-message events), both are here.

use proptest::prelude::*;

use super::*;

fn parse(body: &str) -> Message {
    Message::parse(body.as_bytes()).unwrap_or_else(|error| panic!("{error}: {body}"))
}

fn event(body: &str) -> Event {
    match parse(body).kind {
        MessageKind::Event(event) => event,
        other => panic!("not an event: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Subscribe messages

/// Service Account docs, 订阅通知的事件推送 (developers.weixin.qq.com/doc/service/guide/
/// product/subscription_messages/push.md), XML example.
const POPUP_XML: &str = "<xml>
    <ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
    <FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>
    <CreateTime>1610969440</CreateTime>
    <MsgType><![CDATA[event]]></MsgType>
    <Event><![CDATA[subscribe_msg_popup_event]]></Event>
    <SubscribeMsgPopupEvent>
        <List>
            <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>
            <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>
            <PopupScene>2</PopupScene>
        </List>
        <List>
            <TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId>
            <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>
            <PopupScene>2</PopupScene>
        </List>
    </SubscribeMsgPopupEvent>
</xml>";

/// Mini Program docs, subscribe-message.html, JSON example (as quoted in WeChat's developer
/// community, doc/00044229b3c2d02822021304e66c00; its trailing comma removed: it is not
/// JSON, and WeChat's real pushes have none).
const POPUP_JSON_DOC: &str = r#"{
  "ToUserName": "gh_123456789abc",
  "FromUserName": "o7esq5OI1Uej6Xixw1lA2H7XDVbc",
  "CreateTime": "1620973045",
  "MsgType": "event",
  "Event": "subscribe_msg_popup_event",
  "List": [   {
        "TemplateId": "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68",
        "SubscribeStatusString": "accept",
        "PopupScene": "0"
    }]
 }"#;

/// A real push with one template: `List` is an object and `CreateTime` a number (WeChat's
/// developer community, doc/000a08f88180a0081400916f966400).
const POPUP_JSON_ONE: &str = r#"{
	"CreateTime": 1688953684,
	"Event": "subscribe_msg_popup_event",
	"FromUserName": "o8dH44seYM3qeBzHlrmwI0sAtSfI",
	"List": {
		"PopupScene": "0",
		"SubscribeStatusString": "accept",
		"TemplateId": "BDcgTGpwt7fcRVFhGh-NvjcASaWWmkwzN3y_6mXzJR4"
	},
	"MsgType": "event",
	"ToUserName": "gh_xxxxxxxxxx"
}"#;

#[test]
fn subscribe_popup_in_xml_and_in_json_with_one_or_many_templates() {
    let Event::SubscribeMsgPopup { list } = event(POPUP_XML) else {
        panic!()
    };
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0].template_id,
        "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc"
    );
    assert_eq!(list[0].subscribe_status_string, "accept");
    assert_eq!(list[0].popup_scene.as_deref(), Some("2"));
    assert_eq!(list[1].subscribe_status_string, "reject");
    assert!(list[1].extra.is_empty());

    let message = parse(POPUP_JSON_DOC);
    assert_eq!(message.format, Format::Json);
    assert_eq!(message.create_time, 1_620_973_045);
    let Some(Event::SubscribeMsgPopup { list }) = message.event() else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].popup_scene.as_deref(), Some("0"));
    assert!(message.extra.is_empty(), "{:?}", message.extra);

    let message = parse(POPUP_JSON_ONE);
    assert_eq!(message.create_time, 1_688_953_684);
    let Some(Event::SubscribeMsgPopup { list }) = message.event() else {
        panic!()
    };
    assert_eq!(
        list[..],
        [SubscribePopup {
            template_id: "BDcgTGpwt7fcRVFhGh-NvjcASaWWmkwzN3y_6mXzJR4".into(),
            subscribe_status_string: "accept".into(),
            popup_scene: Some("0".into()),
            extra: vec![],
        }]
    );
}

/// WxJava PR #2477 (quoting the Mini Program docs' JSON, one and several templates), and a
/// real push with several (WeChat developer community, doc/00042034428fa074706c908245b800).
#[test]
fn subscribe_change_with_list_as_object_and_as_array() {
    let one = r#"{
      "ToUserName": "gh_123456789abc",
      "FromUserName": "o7esq5OI1Uej6Xixw1lA2H7XDVbc",
      "CreateTime": "1610968440",
      "MsgType": "event",
      "Event": "subscribe_msg_change_event",
      "List": {
                "TemplateId":"BEwX0BOT3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8",
                "SubscribeStatusString": "reject"
      }
}"#;
    let Event::SubscribeMsgChange { list } = event(one) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subscribe_status_string, "reject");

    let many = r#"{"ToUserName":"xxxxx","FromUserName":"xxxxx","CreateTime":1625575681,"MsgType":"event","Event":"subscribe_msg_change_event","List":[{"SubscribeStatusString":"reject","TemplateId":"savKN0g_My3T-Hb6t5yUJ2HfG6Wj56HRJzxGOyU2z_Y"},{"SubscribeStatusString":"reject","TemplateId":"gIg6LaccfJuD1IAKzSdodAT7U3Z4ZEHZbPcLo1Q-VUo"}]}"#;
    let Event::SubscribeMsgChange { list } = event(many) else {
        panic!()
    };
    let ids: Vec<_> = list.iter().map(|item| item.template_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "savKN0g_My3T-Hb6t5yUJ2HfG6Wj56HRJzxGOyU2z_Y",
            "gIg6LaccfJuD1IAKzSdodAT7U3Z4ZEHZbPcLo1Q-VUo"
        ]
    );

    // Service Account docs' XML (with the wrapper WeChat's docs name
    // SubscribeMsgChangeEvent).
    let xml = "<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\
        <FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>\
        <CreateTime>1610969440</CreateTime><MsgType><![CDATA[event]]></MsgType>\
        <Event><![CDATA[subscribe_msg_change_event]]></Event><SubscribeMsgChangeEvent><List>\
        <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>\
        <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString></List>\
        </SubscribeMsgChangeEvent></xml>";
    let Event::SubscribeMsgChange { list } = event(xml) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
}

/// XML: a captured push (waro163/wechat-message, mini/check/push-event-subscribe.go). JSON
/// with the wrapper kept and `List` an object: a real push reported in royalrick/weapp#63.
#[test]
fn subscribe_sent_in_both_shapes() {
    let xml = "<xml><ToUserName><![CDATA[gh_df0deeb82b8a]]></ToUserName>
<FromUserName><![CDATA[osKp_4j-PO0TsnJhZ1h0GV3alV5U]]></FromUserName>
<CreateTime>1676138869</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[subscribe_msg_sent_event]]></Event>
<SubscribeMsgSentEvent>
<List>
<TemplateId><![CDATA[IHfdMu-oSryLsdvEQqEjB-tKMW8h6g0h2Joj0wTPNdY]]></TemplateId>
<MsgID>2794188253209100289</MsgID>
<ErrorCode>0</ErrorCode>
<ErrorStatus><![CDATA[success]]></ErrorStatus>
</List>
</SubscribeMsgSentEvent></xml>";
    let Event::SubscribeMsgSent { list } = event(xml) else {
        panic!()
    };
    assert_eq!(list[0].msg_id.as_deref(), Some("2794188253209100289"));
    assert_eq!(list[0].error_code.as_deref(), Some("0"));
    assert_eq!(list[0].error_status.as_deref(), Some("success"));

    let json = r#"{
    "ToUserName": "gh_123456789abc",
    "FromUserName": "o7esq5PHRGBQYmeNyfG064wEFVpQ",
    "CreateTime": "1620963428",
    "MsgType": "event",
    "Event": "subscribe_msg_sent_event",
    "SubscribeMsgSentEvent": {
      "List": {
        "TemplateId": "BEwX0BO-T3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8",
        "MsgID": "1864323726461255680",
        "ErrorCode": "0",
        "ErrorStatus": "success"
          }
      }
}"#;
    let Event::SubscribeMsgSent { list } = event(json) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].msg_id.as_deref(), Some("1864323726461255680"));
}

#[test]
fn a_template_without_its_id_is_refused_unknown_item_fields_are_kept() {
    let json = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
        "Event":"subscribe_msg_popup_event","List":{"SubscribeStatusString":"accept"}}"#;
    assert_eq!(
        Message::parse(json.as_bytes()),
        Err(ParseError::MissingField("List/TemplateId"))
    );
    let json = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
        "Event":"subscribe_msg_popup_event","List":{"TemplateId":"t","New":"x"},"Other":1}"#;
    let message = parse(json);
    let Some(Event::SubscribeMsgPopup { list }) = message.event() else {
        panic!()
    };
    assert_eq!(list[0].extra, [("New".to_owned(), "x".to_owned())]);
    assert_eq!(message.field("Other"), Some("1"));
}

// ---------------------------------------------------------------------------------------
// WeCom

/// WeCom docs 90970 (成员变更通知, update_user), as quoted in WxJava's
/// WxCpXmlMessageTest.testChangeContact.
const UPDATE_USER: &str = "<xml>
    <ToUserName><![CDATA[toUser]]></ToUserName>
    <FromUserName><![CDATA[sys]]></FromUserName> 
    <CreateTime>1403610513</CreateTime>
    <MsgType><![CDATA[event]]></MsgType>
    <Event><![CDATA[change_contact]]></Event>
    <ChangeType>update_user</ChangeType>
    <UserID><![CDATA[zhangsan]]></UserID>
    <NewUserID><![CDATA[zhangsan001]]></NewUserID>
    <Name><![CDATA[张三]]></Name>
    <Department><![CDATA[1,2,3]]></Department>
    <IsLeaderInDept><![CDATA[1,0,0]]></IsLeaderInDept>
    <Position><![CDATA[产品经理]]></Position>
    <Mobile>15913215421</Mobile>
    <Gender>1</Gender>
    <Email><![CDATA[zhangsan@gzdev.com]]></Email>
    <Status>1</Status>
    <Avatar><![CDATA[http://wx.qlogo.cn/mmopen/ajNVdqHZLLA3WJ6DSZUfiakYe37PKnQhBIeOQBO4czqrnZDS79FH5Wm5m4X69TBicnHFlhiafvDwklOpZeXYQQ2icg/0]]></Avatar>
    <Alias><![CDATA[zhangsan]]></Alias>
    <Telephone><![CDATA[020-3456788]]></Telephone>
    <Address><![CDATA[广州市]]></Address>
    <ExtAttr>
        <Item>
        <Name><![CDATA[爱好]]></Name>
        <Type>0</Type>
        <Text>
            <Value><![CDATA[旅游]]></Value>
        </Text>
        </Item>
        <Item>
        <Name><![CDATA[卡号]]></Name>
        <Type>1</Type>
        <Web>
            <Title><![CDATA[企业微信]]></Title>
            <Url><![CDATA[https://work.weixin.qq.com]]></Url>
        </Web>
        </Item>
    </ExtAttr>
</xml>";

#[test]
fn change_contact_update_user_keeps_ext_attr_in_extra() {
    let message = parse(UPDATE_USER);
    assert_eq!(message.from_user_name, "sys");
    let Some(Event::ChangeContact(ContactChange::UpdateUser(user))) = message.event() else {
        panic!("{:?}", message.kind)
    };
    assert_eq!(user.user_id, "zhangsan");
    assert_eq!(user.new_user_id.as_deref(), Some("zhangsan001"));
    assert_eq!(user.name.as_deref(), Some("张三"));
    assert_eq!(user.department.as_deref(), Some("1,2,3"));
    assert_eq!(user.is_leader_in_dept.as_deref(), Some("1,0,0"));
    assert_eq!(user.mobile.as_deref(), Some("15913215421"));
    assert_eq!(user.address.as_deref(), Some("广州市"));
    assert_eq!(message.event().unwrap().name(), "change_contact");
    assert_eq!(message.field("ExtAttr/Item/Name"), Some("爱好"));
    assert_eq!(
        message.field("ExtAttr/Item/Web/Url"),
        Some("https://work.weixin.qq.com")
    );
}

/// WeCom docs 90970 (create_party, delete_party, update_tag, delete_user), as quoted in the
/// Go SDKs' comments found by the search tool (silenceper-style `EventChangeContact*`
/// types) and WxJava's WxCpTpXmlMessageTest.
#[test]
fn change_contact_parties_tags_and_deleted_users() {
    let wrap = |body: &str| {
        format!(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName>\
             <FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>\
             <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
             {body}</xml>"
        )
    };
    let created = event(&wrap(
        "<ChangeType><![CDATA[create_party]]></ChangeType><Id>2</Id>\
         <Name><![CDATA[张三]]></Name><ParentId><![CDATA[1]]></ParentId><Order>1</Order>",
    ));
    assert_eq!(
        created,
        Event::ChangeContact(ContactChange::CreateParty(ContactParty {
            id: "2".into(),
            name: Some("张三".into()),
            parent_id: Some("1".into()),
            order: Some("1".into()),
        }))
    );
    let deleted = event(&wrap("<ChangeType>delete_party</ChangeType><Id>2</Id>"));
    assert!(
        matches!(deleted, Event::ChangeContact(ContactChange::DeleteParty(ref party)) if party.id == "2")
    );
    let tag = event(&wrap(
        "<ChangeType><![CDATA[update_tag]]></ChangeType><TagId>1</TagId>\
         <AddUserItems><![CDATA[zhangsan,lisi]]></AddUserItems>\
         <DelUserItems><![CDATA[zhangsan1,lisi1]]></DelUserItems>\
         <AddPartyItems><![CDATA[1,2]]></AddPartyItems>\
         <DelPartyItems><![CDATA[3,4]]></DelPartyItems>",
    ));
    let Event::ChangeContact(ContactChange::UpdateTag(tag)) = tag else {
        panic!()
    };
    assert_eq!(tag.tag_id, "1");
    assert_eq!(tag.add_user_items.as_deref(), Some("zhangsan,lisi"));
    assert_eq!(tag.del_party_items.as_deref(), Some("3,4"));
    let gone = event(&wrap(
        "<ChangeType><![CDATA[delete_user]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>",
    ));
    assert!(
        matches!(gone, Event::ChangeContact(ContactChange::DeleteUser(ref user)) if user.user_id == "zhangsan")
    );
    let future = event(&wrap("<ChangeType>merge_users</ChangeType><X>1</X>"));
    assert_eq!(
        future,
        Event::ChangeContact(ContactChange::Unknown {
            change_type: "merge_users".into()
        })
    );
    assert_eq!(
        Message::parse(wrap("<UserID>zhangsan</UserID>").as_bytes()),
        Err(ParseError::MissingField("ChangeType"))
    );
}

/// WeCom docs 92130 (客户变更事件), as quoted in WxJava's WxCpXmlMessageTest
/// (testAddExternalUserEvent) and in a test of the suite form (del_external_contact with
/// `Source`; the `transfer_fail` form from the Go SDK comments).
#[test]
fn change_external_contact() {
    let added = "<xml><ToUserName><![CDATA[toUser]]></ToUserName>\
        <FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>\
        <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>\
        <ChangeType><![CDATA[add_external_contact]]></ChangeType>\
        <UserID><![CDATA[zhangsan]]></UserID>\
        <ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACH71w]]></ExternalUserID>\
        <State><![CDATA[teststate]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>\
        </xml >";
    let Event::ChangeExternalContact(change) = event(added) else {
        panic!()
    };
    assert_eq!(change.change_type, "add_external_contact");
    assert_eq!(change.user_id.as_deref(), Some("zhangsan"));
    assert_eq!(
        change.external_user_id.as_deref(),
        Some("woAJ2GCAAAXtWyujaWJHDDGi0mACH71w")
    );
    assert_eq!(change.state.as_deref(), Some("teststate"));
    assert_eq!(change.welcome_code.as_deref(), Some("WELCOMECODE"));

    let deleted = "<xml><ToUserName><![CDATA[toUser]]></ToUserName>\
        <FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>\
        <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>\
        <ChangeType><![CDATA[del_external_contact]]></ChangeType>\
        <UserID><![CDATA[zhangsan]]></UserID>\
        <ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACH71w]]></ExternalUserID>\
        <Source><![CDATA[DELETE_BY_TRANSFER]]></Source></xml>";
    let Event::ChangeExternalContact(change) = event(deleted) else {
        panic!()
    };
    assert_eq!(change.source.as_deref(), Some("DELETE_BY_TRANSFER"));

    let failed = "<xml><ToUserName><![CDATA[toUser]]></ToUserName>\
        <FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>\
        <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>\
        <ChangeType><![CDATA[transfer_fail]]></ChangeType>\
        <FailReason><![CDATA[customer_refused]]></FailReason>\
        <UserID><![CDATA[zhangsan]]></UserID>\
        <ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACH71w]]></ExternalUserID></xml>";
    let Event::ChangeExternalContact(change) = event(failed) else {
        panic!()
    };
    assert_eq!(change.fail_reason.as_deref(), Some("customer_refused"));
}

/// WeCom docs 92130 (客户群变更事件, update), as quoted in the Go SDK comments and
/// SKIT.FlurlHttpClient.Wechat's tests.
#[test]
fn change_external_chat_with_member_list() {
    let xml = "<xml><ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[sys]]></FromUserName>
<CreateTime>1403610513</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[change_external_chat]]></Event>
<ChatId><![CDATA[CHAT_ID]]></ChatId>
<ChangeType><![CDATA[update]]></ChangeType>
<UpdateDetail><![CDATA[add_member]]></UpdateDetail>
<JoinScene>1</JoinScene>
<QuitScene>0</QuitScene>
<MemChangeCnt>10</MemChangeCnt>
<MemChangeList>
    <Item>Jack</Item>
    <Item>Rose</Item>
</MemChangeList>
<LastMemVer>9c3f97c2ada667dfb5f6d03308d963e1</LastMemVer>
<CurMemVer>71217227bbd112ecfe3a49c482195cb4</CurMemVer>
</xml>";
    let Event::ChangeExternalChat(chat) = event(xml) else {
        panic!()
    };
    assert_eq!(chat.change_type, "update");
    assert_eq!(chat.chat_id, "CHAT_ID");
    assert_eq!(chat.update_detail.as_deref(), Some("add_member"));
    assert_eq!(chat.join_scene.as_deref(), Some("1"));
    assert_eq!(chat.mem_change_cnt.as_deref(), Some("10"));
    assert_eq!(chat.mem_change_list, ["Jack", "Rose"]);
    assert_eq!(
        chat.cur_mem_ver.as_deref(),
        Some("71217227bbd112ecfe3a49c482195cb4")
    );
}

/// WeCom docs 92130 (企业客户标签创建事件), as quoted in a Go SDK's test
/// (TestParseCreateExternalTag).
#[test]
fn change_external_tag() {
    let xml = "<xml>
		<ToUserName><![CDATA[CORPID]]></ToUserName>
		<FromUserName><![CDATA[sys]]></FromUserName> 
		<CreateTime>1403610513</CreateTime>
		<MsgType><![CDATA[event]]></MsgType>
		<Event><![CDATA[change_external_tag]]></Event>
		<Id><![CDATA[TAG_ID]]></Id>
		<TagType><![CDATA[tag]]></TagType>
		<ChangeType><![CDATA[create]]></ChangeType>
		<StrategyId>1</StrategyId>
	</xml>";
    assert_eq!(
        event(xml),
        Event::ChangeExternalTag(ExternalTagChange {
            change_type: "create".into(),
            id: Some("TAG_ID".into()),
            tag_type: Some("tag".into()),
            strategy_id: Some("1".into()),
        })
    );
}

/// WeCom docs 90973 (异步任务完成通知), as quoted in wechatpy's work tests and jfinal-qyweixin;
/// the top-level layout as some WeCom apps receive it (SKIT's tests).
#[test]
fn batch_job_result_in_both_layouts() {
    let xml = "<xml><ToUserName><![CDATA[wx28dbb14e37208abe]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>1425284517</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[batch_job_result]]></Event>
<BatchJob><JobId><![CDATA[S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4]]></JobId>
<JobType><![CDATA[sync_user]]></JobType>
<ErrCode>0</ErrCode>
<ErrMsg><![CDATA[ok]]></ErrMsg>
</BatchJob>
</xml>";
    assert_eq!(
        event(xml),
        Event::BatchJobResult(BatchJob {
            job_id: "S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4".into(),
            job_type: Some("sync_user".into()),
            err_code: Some("0".into()),
            err_msg: Some("ok".into()),
        })
    );
    let top = "<xml><ToUserName><![CDATA[ww-corp]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>\
        <CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>\
        <Event><![CDATA[batch_job_result]]></Event><JobId><![CDATA[job-100]]></JobId>\
        <JobType><![CDATA[sync_user]]></JobType><ErrCode>0</ErrCode><ErrMsg>ok</ErrMsg></xml>";
    let Event::BatchJobResult(job) = event(top) else {
        panic!()
    };
    assert_eq!(job.job_id, "job-100");
}

/// WeCom docs 90240 (进入应用), as quoted in WxJava's WxCpTpXmlMessageTest.enterAppTest.
#[test]
fn enter_agent() {
    let xml = "<xml><ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>1408091189</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[enter_agent]]></Event>
<EventKey><![CDATA[]]></EventKey>
<AgentID>1</AgentID>
</xml>";
    assert_eq!(
        event(xml),
        Event::EnterAgent {
            event_key: Some(String::new()),
            agent_id: Some("1".into())
        }
    );
}

/// WeCom docs 90240 (模板卡片事件推送), as quoted in WxJava's
/// WxCpXmlMessageTest.testTemplateCardEvent.
#[test]
fn template_card_event_with_selected_items() {
    let xml = "<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[template_card_event]]></Event>
<EventKey><![CDATA[key111]]></EventKey>
<TaskId><![CDATA[taskid111]]></TaskId>
<CardType><![CDATA[text_notice]]></CardType>
<ResponseCode><![CDATA[ResponseCode]]></ResponseCode>
<AgentID>1</AgentID>
<SelectedItems>
    <SelectedItem>
        <QuestionKey><![CDATA[QuestionKey1]]></QuestionKey>
        <OptionIds>
            <OptionId><![CDATA[OptionId1]]></OptionId>
            <OptionId><![CDATA[OptionId2]]></OptionId>
        </OptionIds>
    </SelectedItem>
    <SelectedItem>
        <QuestionKey><![CDATA[QuestionKey2]]></QuestionKey>
        <OptionIds>
            <OptionId><![CDATA[OptionId3]]></OptionId>
            <OptionId><![CDATA[OptionId4]]></OptionId>
        </OptionIds>
    </SelectedItem>
</SelectedItems>
</xml>";
    let Event::TemplateCardEvent(card) = event(xml) else {
        panic!()
    };
    assert_eq!(card.event_key, "key111");
    assert_eq!(card.task_id, "taskid111");
    assert_eq!(card.card_type.as_deref(), Some("text_notice"));
    assert_eq!(card.response_code.as_deref(), Some("ResponseCode"));
    assert_eq!(card.agent_id.as_deref(), Some("1"));
    let items: Vec<_> = card
        .selected_items
        .iter()
        .map(|item| (item.question_key.as_str(), item.option_ids.clone()))
        .collect();
    assert_eq!(
        items,
        [
            ("QuestionKey1", vec!["OptionId1".into(), "OptionId2".into()]),
            ("QuestionKey2", vec!["OptionId3".into(), "OptionId4".into()]),
        ]
    );
}

/// 微信客服 docs 94670 (接收消息和事件), as quoted in several SDKs (wxkefu-rs's docs among
/// them).
#[test]
fn kf_msg_or_event() {
    let xml = "<xml>
   <ToUserName><![CDATA[ww12345678910]]></ToUserName>
   <CreateTime>1348831860</CreateTime>
   <MsgType><![CDATA[event]]></MsgType>
   <Event><![CDATA[kf_msg_or_event]]></Event>
   <Token><![CDATA[ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR]]></Token>
   <OpenKfId><![CDATA[wkxxxxxxx]]></OpenKfId>
</xml>";
    // This push names no sender: `from_user_name` is empty.
    let message = parse(xml);
    assert_eq!(message.from_user_name, "");
    assert_eq!(message.to_user_name, "ww12345678910");
    assert_eq!(
        message.event(),
        Some(&Event::KfMsgOrEvent {
            token: "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR".into(),
            open_kf_id: Some("wkxxxxxxx".into())
        })
    );
    // A message (not an event) without a sender is still refused.
    let text = xml.replace(
        "<MsgType><![CDATA[event]]></MsgType>",
        "<MsgType>text</MsgType><Content>x</Content>",
    );
    assert_eq!(
        Message::parse(text.as_bytes()),
        Err(ParseError::MissingField("FromUserName"))
    );
    let with_sender = xml.replace(
        "<CreateTime>",
        "<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>",
    );
    assert_eq!(
        event(&with_sender),
        Event::KfMsgOrEvent {
            token: "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR".into(),
            open_kf_id: Some("wkxxxxxxx".into())
        }
    );
}

/// WeCom third-party docs 90639 (通讯录事件通知, suite form), as quoted in an ePaaS mirror of
/// the docs (create_user) and WxJava's WxCpTpXmlMessageTest.tagNotifyTest (update_tag).
#[test]
fn suite_change_contact_info_pushes() {
    let created = parse(
        "<xml>
        <SuiteId><![CDATA[ww4asffe99exxx0f4c]]></SuiteId>
        <AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId>
        <InfoType><![CDATA[change_contact]]></InfoType>
        <TimeStamp>1403610513</TimeStamp>
        <ChangeType><![CDATA[create_user]]></ChangeType>
        <UserID><![CDATA[zhangsan]]></UserID>
    </xml>",
    );
    assert_eq!(created.create_time, 1_403_610_513);
    assert_eq!(created.msg_type(), "");
    let MessageKind::SuiteChangeContact {
        suite_id,
        auth_corp_id,
        change: ContactChange::CreateUser(user),
    } = &created.kind
    else {
        panic!("{:?}", created.kind)
    };
    assert_eq!(suite_id, "ww4asffe99exxx0f4c");
    assert_eq!(auth_corp_id, "wxf8b4f85f3a794e77");
    assert_eq!(user.user_id, "zhangsan");

    let tag = parse(
        "<xml>
    <SuiteId><![CDATA[ww4asffe99e54cxxxx]]></SuiteId>
    <AuthCorpId><![CDATA[wxf8b4f85f3a79xxxx]]></AuthCorpId>
    <InfoType><![CDATA[change_contact]]></InfoType>
    <TimeStamp>1403610513</TimeStamp>
    <ChangeType><![CDATA[update_tag]]></ChangeType>
    <TagId>1</TagId>
    <AddUserItems><![CDATA[zhangsan,lisi]]></AddUserItems>
    <DelUserItems><![CDATA[zhangsan1,lisi1]]></DelUserItems>
    <AddPartyItems><![CDATA[1,2]]></AddPartyItems>
    <DelPartyItems><![CDATA[3,4]]></DelPartyItems>
</xml>",
    );
    assert!(matches!(
        tag.kind,
        MessageKind::SuiteChangeContact {
            change: ContactChange::UpdateTag(_),
            ..
        }
    ));
    // Other suite notices stay `Info`.
    let ticket = parse(
        "<xml><SuiteId>ww4a</SuiteId><InfoType>suite_ticket</InfoType>\
         <TimeStamp>1</TimeStamp><SuiteTicket>t</SuiteTicket></xml>",
    );
    assert!(matches!(ticket.kind, MessageKind::Info { .. }));
}

// ---------------------------------------------------------------------------------------
// JSON pushes of the ordinary types

/// Mini Program docs, 客服消息 (customer-service messages) JSON examples.
#[test]
fn mini_program_customer_service_messages_in_json() {
    let text = parse(
        r#"{
  "ToUserName": "toUser",
  "FromUserName": "fromUser",
  "CreateTime": 1482048670,
  "MsgType": "text",
  "Content": "this is a test",
  "MsgId": 1234567890123456
}"#,
    );
    assert_eq!(text.msg_id, Some(1_234_567_890_123_456));
    assert_eq!(
        text.kind,
        MessageKind::Text {
            content: "this is a test".into()
        }
    );
    assert_eq!(text.fingerprint(), None);

    let page = parse(
        r#"{
  "ToUserName": "toUser",
  "FromUserName": "fromUser",
  "CreateTime": 1482048670,
  "MsgType": "miniprogrampage",
  "MsgId": 1234567890123456,
  "Title":"title",
  "AppId":"appid",
  "PagePath":"path",
  "ThumbUrl":"",
  "ThumbMediaId":""
}"#,
    );
    assert_eq!(page.msg_type(), "miniprogrampage");
    assert_eq!(page.field("PagePath"), Some("path"));
    assert_eq!(page.field("ThumbUrl"), Some(""));

    let enter = parse(
        r#"{
  "ToUserName": "toUser",
  "FromUserName": "fromUser",
  "CreateTime": 1482048670,
  "MsgType": "event",
  "Event": "user_enter_tempsession",
  "SessionFrom": "sessionFrom"
}"#,
    );
    assert_eq!(enter.event().unwrap().name(), "user_enter_tempsession");
    assert_eq!(enter.field("SessionFrom"), Some("sessionFrom"));
}

/// 视频号小店 pushes, the shape of `channels_ec_order_pay` (order ids are 19-digit
/// numbers, nested in `order_info`). Written from memory of the store docs, not fetched.
#[test]
fn store_events_keep_nested_numbers_exactly() {
    let order = parse(
        r#"{"ToUserName":"gh_*","FromUserName":"OPENID","CreateTime":1662480000,
            "MsgType":"event","Event":"channels_ec_order_pay",
            "order_info":{"order_id":3705115058471208928,"pay_time":1658509200}}"#,
    );
    assert_eq!(
        order.field("order_info/order_id"),
        Some("3705115058471208928")
    );
    assert_eq!(order.field("order_info/pay_time"), Some("1658509200"));
    assert!(order.fingerprint().is_some());
}

/// The official JSON safe-mode sample's plaintext (vector V16).
#[test]
fn the_official_json_sample_plaintext() {
    let message = parse(
        r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#,
    );
    assert_eq!(message.event().unwrap().name(), "debug_demo");
    assert_eq!(message.field("debug_str"), Some("hello world"));
    assert_eq!(message.create_time, 1_714_112_445);
}

/// The same message in XML and JSON is the same model (but for its format).
#[test]
fn xml_and_json_give_the_same_model() {
    let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
        <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType>\
        <Event><![CDATA[scancode_push]]></Event><EventKey><![CDATA[k]]></EventKey>\
        <ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>\
        <Extra><A>x</A></Extra></xml>";
    let json = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
        "Event":"scancode_push","EventKey":"k","ScanCodeInfo":{"ScanType":"qrcode","ScanResult":"1"},
        "Extra":{"A":"x"}}"#;
    let (xml, json) = (parse(xml), parse(json));
    assert_eq!(xml.format, Format::Xml);
    assert_eq!(json.format, Format::Json);
    assert_eq!(xml.kind, json.kind);
    assert_eq!(xml.extra, json.extra);
    assert_eq!(
        (xml.to_user_name, xml.create_time),
        (json.to_user_name, json.create_time)
    );
}

#[test]
fn json_numbers_are_read_for_typed_fields() {
    let json = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"location",
        "Location_X":23.134521,"Location_Y":113.358803,"Scale":20,"Label":"位置","MsgId":7}"#;
    assert_eq!(
        parse(json).kind,
        MessageKind::Location {
            location_x: 23.134521,
            location_y: 113.358803,
            scale: 20,
            label: "位置".into()
        }
    );
    // A number where a number is needed, as text or not; anything else is an error.
    let bad = json.replace("\"Scale\":20", "\"Scale\":{\"x\":1}");
    assert_eq!(
        Message::parse(bad.as_bytes()),
        Err(ParseError::MissingField("Scale"))
    );
}

#[test]
fn json_replies_have_the_callbacks_format_and_read_back() {
    let message = parse(
        r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":1}"#,
    );
    let reply = message.reply(ReplyContent::text("a \"quoted\" \\ line\nand </xml>"));
    assert_eq!(reply.format(), Some(Format::Json));
    assert_eq!(reply.content_type(), "application/json; charset=utf-8");
    let body = reply.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["ToUserName"], "o1");
    assert_eq!(value["FromUserName"], "gh_1");
    assert!(value["CreateTime"].is_u64());
    assert_eq!(value["MsgType"], "text");
    assert_eq!(value["Content"], "a \"quoted\" \\ line\nand </xml>");
    assert_eq!(Reply::parse(&body), Ok(reply));

    let news = Reply::new(
        "o1",
        "gh_1",
        5,
        ReplyContent::news(vec![
            Article {
                title: "t1".into(),
                ..Article::default()
            },
            Article {
                title: "t2".into(),
                url: "u2".into(),
                ..Article::default()
            },
        ])
        .unwrap(),
    )
    .with_format(Format::Json);
    let value: serde_json::Value = serde_json::from_str(&news.to_json()).unwrap();
    assert_eq!(value["ArticleCount"], 2);
    assert_eq!(value["Articles"][1]["Url"], "u2");
    assert_eq!(Reply::parse(news.to_json().as_bytes()), Ok(news));

    let transfer = Reply::new("o1", "gh_1", 5, ReplyContent::transfer_customer_service())
        .with_format(Format::Json);
    assert_eq!(
        transfer.to_json(),
        r#"{"ToUserName":"o1","FromUserName":"gh_1","CreateTime":5,"MsgType":"transfer_customer_service"}"#
    );
}

/// Any text at all (JSON carries every character), so any reply round-trips exactly.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        prop::sample::select(vec![
            "\"",
            "\\",
            "\u{0}",
            "\u{1f}",
            "\u{2028}",
            "}",
            "{\"a\":1}"
        ])
        .prop_map(str::to_owned),
    ]
}

fn any_content() -> impl Strategy<Value = ReplyContent> {
    super::tests::reply_content_from(any_text)
}

proptest! {
    #[test]
    fn json_replies_round_trip_exactly(to in any_text(), from in any_text(), time in any::<u64>(), content in any_content()) {
        let reply = Reply::new(to, from, time, content).with_format(Format::Json);
        let json = reply.to_json();
        // Valid JSON for any JSON reader, not only ours.
        prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{}", json);
        prop_assert_eq!(Reply::parse(json.as_bytes()), Ok(reply));
    }

    #[test]
    fn a_json_text_reply_is_exactly_one_text_message(content in any_text()) {
        let reply = Reply::new("oUser", "gh_account", 1, ReplyContent::text(content.clone()))
            .with_format(Format::Json);
        let parsed = Message::parse(reply.to_json().as_bytes()).unwrap();
        prop_assert_eq!(parsed.kind, MessageKind::Text { content });
        prop_assert!(parsed.extra.is_empty(), "{:?}", parsed.extra);
    }

    #[test]
    fn random_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut body = b"{".to_vec();
        body.extend(bytes);
        let _ = Message::parse(&body);
        let _ = Reply::parse(&body);
    }

    #[test]
    fn mutated_json_never_panics(position in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let mut json = POPUP_JSON_ONE.as_bytes().to_vec();
        if let Some(slot) = json.get_mut(position) {
            *slot = byte;
        }
        json.truncate(cut.max(1));
        if let Err(error) = Message::parse(&json) {
            let shown = error.to_string();
            prop_assert!(shown.len() <= 60 && shown.is_ascii(), "{}", shown);
        }
    }
}
