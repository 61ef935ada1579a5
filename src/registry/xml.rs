//! XML: Eureka's XML representation, written with quick-xml (which escapes text and attributes).
//!
//! `wire.rs` calls in here for clients that did not ask for JSON; an instance is rendered from
//! its description as [`Node`]s (`tree.rs`), everything as text. Ports render as
//! `<port enabled="true">8080</port>` and the data center as `<dataCenterInfo class="...">`, the
//! attributes py-eureka-client reads. Metadata keys become element names, as in Eureka; a key
//! that is no valid XML name is left out of the XML.

use std::io;

use quick_xml::events::BytesText;
use quick_xml::Writer;

use super::instance::{Action, Instance};
use super::snapshot::{AppView, AppsView};
use super::tree::{instance_nodes, Node};

type Xml = Writer<Vec<u8>>;

pub(crate) fn applications(view: &AppsView<'_>) -> String {
    render(|w| {
        w.create_element("applications").write_inner_content(|w| {
            text(w, "versions__delta", &view.version.to_string())?;
            text(w, "apps__hashcode", &view.hashcode)?;
            view.apps
                .iter()
                .try_for_each(|app| write_application(w, app))
        })?;
        Ok(())
    })
}

pub(crate) fn application(app: &AppView<'_>) -> String {
    render(|w| write_application(w, app))
}

pub(crate) fn instance(info: &Instance, action: Action) -> String {
    render(|w| write_instance(w, info, action))
}

fn render(write: impl FnOnce(&mut Xml) -> io::Result<()>) -> String {
    let mut writer = Writer::new(Vec::new());
    write(&mut writer).expect("writing XML to memory cannot fail");
    String::from_utf8_lossy(&writer.into_inner()).into_owned()
}

fn write_application(w: &mut Xml, app: &AppView<'_>) -> io::Result<()> {
    w.create_element("application").write_inner_content(|w| {
        text(w, "name", app.name)?;
        app.instances
            .iter()
            .try_for_each(|(info, action)| write_instance(w, info, *action))
    })?;
    Ok(())
}

fn write_instance(w: &mut Xml, info: &Instance, action: Action) -> io::Result<()> {
    write_group(w, "instance", instance_nodes(info, action))
}

fn write_group(w: &mut Xml, name: &str, nodes: Vec<(&'static str, Node<'_>)>) -> io::Result<()> {
    w.create_element(name).write_inner_content(|w| {
        nodes
            .into_iter()
            .try_for_each(|(name, node)| write_node(w, name, node))
    })?;
    Ok(())
}

fn write_node(w: &mut Xml, name: &str, node: Node<'_>) -> io::Result<()> {
    match node {
        Node::Text(value) => text(w, name, value),
        Node::IntText(n) | Node::Int(n) => text(w, name, &n.to_string()),
        Node::Port(port) => {
            w.create_element(name)
                .with_attribute(("enabled", if port.enabled { "true" } else { "false" }))
                .write_text_content(BytesText::new(&port.number.to_string()))?;
            Ok(())
        }
        Node::DataCenter(dc) => {
            w.create_element(name)
                .with_attribute(("class", dc.class.as_str()))
                .write_inner_content(|w| {
                    text(w, "name", &dc.name)?;
                    if !dc.metadata.is_empty() {
                        write_node(w, "metadata", Node::Map(&dc.metadata))?;
                    }
                    Ok(())
                })?;
            Ok(())
        }
        Node::Map(map) => {
            w.create_element(name).write_inner_content(|w| {
                map.iter()
                    .filter(|(key, _)| is_xml_name(key))
                    .try_for_each(|(key, value)| text(w, key, value))
            })?;
            Ok(())
        }
        Node::Group(nodes) => write_group(w, name, nodes),
    }
}

fn text(w: &mut Xml, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

/// A conservative XML name: a letter or `_`, then letters, digits, `_`, `-` or `.`.
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_skips_bad_metadata_names() {
        let mut info = Instance::new("app", "a<b&c", "h", "1.2.3.4");
        info.metadata
            .insert("management.port".into(), "8080".into());
        info.metadata.insert("bad key".into(), "x".into());
        info.data_center.class = "x\"y".into();
        let out = instance(&info, Action::Added);
        assert!(
            out.contains("<instanceId>a&lt;b&amp;c</instanceId>"),
            "{out}"
        );
        assert!(
            out.contains("<management.port>8080</management.port>"),
            "{out}"
        );
        assert!(!out.contains("bad key"), "{out}");
        assert!(
            out.contains(r#"<dataCenterInfo class="x&quot;y">"#),
            "{out}"
        );
        assert!(out.contains(r#"<port enabled="true">7001</port>"#), "{out}");
        assert!(out.contains("<countryId>1</countryId>"), "{out}");
    }
}
