//! Canned answers for request nodes (`hookflow test`), and the book of what
//! the nodes sent.
//!
//! An executor with [`Stubs`] never sends a request: a request node takes
//! its answer, one per try, from the stubs of its key and writes down what it
//! would have sent. A node without a stub, or whose list of answers ran out,
//! fails, and the book keeps the [`StubProblem`] so that the test fails
//! whatever the workflow does with the node's error.

use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

/// One canned answer to one try.
#[derive(Debug, Clone, PartialEq)]
pub enum Stub {
    /// An HTTP answer.
    Response {
        /// Status code.
        status: u16,
        /// Headers.
        headers: Map<String, Json>,
        /// Body (JSON, or a string).
        body: Json,
    },
    /// A try that got no answer.
    Failure(StubFailure),
}

/// A try without an answer, as a real one could fail (both are retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StubFailure {
    /// The try timed out.
    Timeout,
    /// The connection could not be made.
    Connect,
}

impl StubFailure {
    /// The reason a real try of this kind gives.
    pub fn reason(self) -> &'static str {
        match self {
            StubFailure::Timeout => "timed out",
            StubFailure::Connect => "could not connect",
        }
    }
}

/// The answers of one request node.
#[derive(Debug, Clone, PartialEq)]
pub enum StubAnswers {
    /// One answer for every try.
    Every(Stub),
    /// One answer per try, in order, over every run of the node (retries and
    /// loop iterations alike); a try past the end fails.
    Each(Vec<Stub>),
}

/// A request a node would have sent, as it would have gone out.
#[derive(Debug, Clone, PartialEq)]
pub struct SentRequest {
    /// The node's key (`node<index>` for a node without one).
    pub node: String,
    /// Method, upper case.
    pub method: String,
    /// The URL, query string included.
    pub url: String,
    /// Headers in the order they would be sent (`idempotency-key` and
    /// `content-type` first).
    pub headers: Vec<(String, String)>,
    /// The body bytes, if any.
    pub body: Option<Vec<u8>>,
}

/// Why a request node got no canned answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubProblem {
    /// The node has no stub.
    Missing {
        /// The node's key (`node<index>` for a node without one).
        node: String,
        /// Whether the node has a key (a stub needs one).
        keyed: bool,
    },
    /// The node's list of answers was shorter than its tries.
    RanOut {
        /// The node's key.
        node: String,
        /// How many answers the list has.
        answers: usize,
    },
}

impl fmt::Display for StubProblem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StubProblem::Missing { node, keyed: true } => write!(
                f,
                "request node `{node}` has no stub, and tests send nothing: \
                 add one to the case, e.g. `stubs: {{ {node}: {{ status: 200, body: {{}} }} }}`"
            ),
            StubProblem::Missing { keyed: false, .. } => f.write_str(
                "a request node without a key was reached, and tests send nothing: \
                 give the node a `key:` and add a stub for it to the case's `stubs`",
            ),
            StubProblem::RanOut { node, answers } => write!(
                f,
                "request node `{node}` was tried more often than its stub list has answers \
                 ({answers}): add answers to the list, or give one mapping to answer every try"
            ),
        }
    }
}

/// The stubs of one test case, and what the request nodes sent.
#[derive(Debug, Default)]
pub struct Stubs {
    answers: HashMap<String, StubAnswers>,
    book: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    /// Tries answered so far, by node.
    used: HashMap<String, usize>,
    sent: Vec<SentRequest>,
    problems: Vec<StubProblem>,
}

impl Stubs {
    /// Stubs answering by node key.
    pub fn new(answers: HashMap<String, StubAnswers>) -> Stubs {
        Stubs {
            answers,
            book: Mutex::default(),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // The book is only appended to: what a panicking holder left is usable.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer to one try of `request` (whose `node` is keyed or not), and
    /// the request written down as sent; or the problem, written down too.
    pub fn answer(&self, request: SentRequest, keyed: bool) -> Result<Stub, StubProblem> {
        let mut book = self.book();
        let node = request.node.clone();
        let answer = match self.answers.get(&node).filter(|_| keyed) {
            None => Err(StubProblem::Missing { node, keyed }),
            Some(StubAnswers::Every(stub)) => Ok(stub.clone()),
            Some(StubAnswers::Each(list)) => {
                let used = book.used.get(&node).copied().unwrap_or(0);
                match list.get(used) {
                    Some(stub) => Ok(stub.clone()),
                    None => Err(StubProblem::RanOut {
                        node,
                        answers: list.len(),
                    }),
                }
            }
        };
        match &answer {
            Ok(_) => {
                *book.used.entry(request.node.clone()).or_insert(0) += 1;
                book.sent.push(request);
            }
            Err(problem) => {
                if !book.problems.contains(problem) {
                    book.problems.push(problem.clone());
                }
            }
        }
        answer
    }

    /// Every request answered so far, in the order they were made.
    pub fn sent(&self) -> Vec<SentRequest> {
        self.book().sent.clone()
    }

    /// The tries that got no answer (each problem once).
    pub fn problems(&self) -> Vec<StubProblem> {
        self.book().problems.clone()
    }
}

/// Whether `expected` (as a test file writes it) names the URL `sent` (as a
/// request node formed it): equal once both are parsed, so that
/// `https://erp.example` names `https://erp.example/`.
pub fn same_url(expected: &str, sent: &str) -> bool {
    match (reqwest::Url::parse(expected), reqwest::Url::parse(sent)) {
        (Ok(e), Ok(s)) => e == s,
        _ => expected == sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16) -> Stub {
        Stub::Response {
            status,
            headers: Map::new(),
            body: Json::Null,
        }
    }

    fn sent(node: &str) -> SentRequest {
        SentRequest {
            node: node.into(),
            method: "POST".into(),
            url: "https://x.example/".into(),
            headers: Vec::new(),
            body: None,
        }
    }

    #[test]
    fn a_list_answers_each_try_once_then_runs_out() {
        let stubs = Stubs::new(HashMap::from([
            ("erp".to_string(), StubAnswers::Each(vec![ok(503), ok(200)])),
            ("one".to_string(), StubAnswers::Every(ok(201))),
        ]));
        assert_eq!(stubs.answer(sent("erp"), true), Ok(ok(503)));
        assert_eq!(stubs.answer(sent("one"), true), Ok(ok(201)));
        assert_eq!(stubs.answer(sent("erp"), true), Ok(ok(200)));
        assert_eq!(stubs.answer(sent("one"), true), Ok(ok(201)));
        let ran_out = StubProblem::RanOut {
            node: "erp".into(),
            answers: 2,
        };
        assert_eq!(stubs.answer(sent("erp"), true), Err(ran_out.clone()));
        assert_eq!(stubs.answer(sent("erp"), true), Err(ran_out.clone()));
        let missing = StubProblem::Missing {
            node: "other".into(),
            keyed: true,
        };
        assert_eq!(stubs.answer(sent("other"), true), Err(missing.clone()));
        assert_eq!(stubs.sent().len(), 4, "only answered tries count as sent");
        assert_eq!(stubs.problems(), vec![ran_out, missing]);
    }

    #[test]
    fn a_node_without_a_key_is_never_answered() {
        let stubs = Stubs::new(HashMap::from([(
            "node3".to_string(),
            StubAnswers::Every(ok(200)),
        )]));
        assert!(matches!(
            stubs.answer(sent("node3"), false),
            Err(StubProblem::Missing { keyed: false, .. })
        ));
    }

    #[test]
    fn urls_compare_parsed() {
        assert!(same_url("https://erp.example", "https://erp.example/"));
        assert!(same_url(
            "https://ERP.example/a?x=1",
            "https://erp.example/a?x=1"
        ));
        assert!(!same_url(
            "https://erp.example/a?x=1",
            "https://erp.example/a?x=2"
        ));
        assert!(!same_url("not a url", "https://erp.example/"));
    }
}
