//! A real S3 server for tests: s3s over s3s-fs, in-process on 127.0.0.1 with SigV4
//! signature checking, one per test process, on its own thread and runtime so that it
//! outlives every test's runtime.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::repo::{RepoLocation, S3Options};

pub const ACCESS_KEY: &str = "metapitr-test-access";
pub const SECRET_KEY: &str = "metapitr-test-secret-0123456789";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

static SERVER: OnceLock<S3Server> = OnceLock::new();
static BUCKETS: AtomicU64 = AtomicU64::new(0);

/// The process's S3 server, started on first use.
pub fn s3() -> &'static S3Server {
    SERVER.get_or_init(start)
}

fn start() -> S3Server {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let fs_root = root.clone();
    std::thread::Builder::new()
        .name("s3-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(fs_root, tx));
        })
        .unwrap();
    let port = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the in-process S3 server did not start");
    S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        root,
        _dir: dir,
    }
}

async fn serve(root: PathBuf, ready: std::sync::mpsc::Sender<u16>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let fs = s3s_fs::FileSystem::new(&root).unwrap();
    let mut b = s3s::service::S3ServiceBuilder::new(AtomicConditions {
        inner: fs,
        root: root.clone(),
        puts: tokio::sync::Mutex::new(()),
    });
    b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ready.send(listener.local_addr().unwrap().port()).unwrap();
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        // Without it, small responses wait for the peer's delayed ACK (~40 ms each).
        let _ = socket.set_nodelay(true);
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

impl S3Server {
    /// Creates a fresh bucket and returns its name.
    pub fn bucket(&self) -> String {
        let name = format!(
            "bucket-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        std::fs::create_dir_all(self.root.join(&name)).unwrap();
        name
    }

    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            allow_http: Some(true),
        }
    }

    /// A repo location in a fresh bucket, under `directory`.
    pub fn location(&self, directory: Option<&str>) -> RepoLocation {
        RepoLocation {
            url: format!("s3://{}", self.bucket()),
            directory: directory.map(String::from),
            s3: self.options(),
            ..Default::default()
        }
    }

    /// The environment a child process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

/// s3s-fs with S3's guarantees for what the repo relies on: a conditional PUT
/// (If-None-Match / If-Match) is checked and applied atomically (s3s-fs checks, then
/// writes, so two racing creates could both succeed), and a PUT into a bucket that does not
/// exist fails with NoSuchBucket (s3s-fs would create its directory).
struct AtomicConditions {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
    puts: tokio::sync::Mutex<()>,
}

/// The S3 impl: `put_object` as above, every other listed operation passed through.
macro_rules! s3_impl {
    ($($name:ident($input:ident) -> $output:ident;)*) => {
        #[async_trait::async_trait]
        impl s3s::S3 for AtomicConditions {
            async fn put_object(
                &self,
                req: s3s::S3Request<s3s::dto::PutObjectInput>,
            ) -> s3s::S3Result<s3s::S3Response<s3s::dto::PutObjectOutput>> {
                if !self.root.join(&req.input.bucket).is_dir() {
                    return Err(s3s::s3_error!(NoSuchBucket));
                }
                let conditional =
                    req.input.if_none_match.is_some() || req.input.if_match.is_some();
                let _g = if conditional {
                    Some(self.puts.lock().await)
                } else {
                    None
                };
                self.inner.put_object(req).await
            }
            $(
                async fn $name(
                    &self,
                    req: s3s::S3Request<s3s::dto::$input>,
                ) -> s3s::S3Result<s3s::S3Response<s3s::dto::$output>> {
                    self.inner.$name(req).await
                }
            )*
        }
    };
}

s3_impl! {
    get_object(GetObjectInput) -> GetObjectOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    list_objects(ListObjectsInput) -> ListObjectsOutput;
    list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
    copy_object(CopyObjectInput) -> CopyObjectOutput;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
}
