//! Glance's image cache (`--image-cache-dir`, Images API v2.14) and store weights
//! (`--image-store-weights`) through the image API: the cache API's answers and
//! refusals, the cache filling on queueing, on download and from the prefetcher, hits,
//! an image's deletion emptying it, nothing appended to the log by the cache; stores
//! listed by weight and the weights in `/v2/info/stores/detail`.

use std::time::Duration;

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::glance::poll;
use tests::Harness;

const ALICE: &str = "alice:p1";
const ADMIN: &str = "admin:admin:admin";

/// A raw/bare image record of ALICE's.
async fn create(h: &Harness, name: &str) -> String {
    h.image_create(
        ALICE,
        json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
    )
    .await
}

fn with_cache(o: &mut tests::StackOptions) {
    o.image_cache_dir = Some(o.data_dir.join("image-cache"));
    o.cache_prefetcher_interval = Duration::from_millis(200);
}

async fn cache(h: &Harness) -> Value {
    let (code, v) = h.glance(ADMIN, M::GET, "/v2/cache", None).await;
    assert_eq!(code, 200, "{v}");
    v
}

/// The row of `id` in the cached images, if cached.
fn row(v: &Value, id: &str) -> Option<Value> {
    v["cached_images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["image_id"] == id)
        .cloned()
}

/// Polls `GET /v2/cache` until `id` is cached (10 s at most).
async fn wait_cached(h: &Harness, id: &str) -> Value {
    poll(format!("{id} cached"), || async {
        row(&cache(h).await, id)
    })
    .await
}

async fn clear(h: &Harness, target: Option<&str>) -> (u16, Value) {
    let addr = h.stack.image_addr.unwrap();
    let mut rb = h
        .http
        .delete(format!("http://{addr}/v2/cache"))
        .header("X-Auth-Token", ADMIN);
    if let Some(t) = target {
        rb = rb.header("x-image-cache-clear-target", t);
    }
    let r = rb.send().await.unwrap();
    let code = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn version_ids(v: &Value) -> Vec<String> {
    v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cache_directory_the_cache_api_is_not_supported() {
    let h = Harness::start(|_| {}).await;
    let (code, e) = h.glance(ADMIN, M::GET, "/v2/cache", None).await;
    assert_eq!(code, 404);
    assert_eq!(
        e["message"],
        "Caching via API is not supported at this site."
    );
    let (code, _) = h.glance(ALICE, M::GET, "/v2/cache", None).await;
    assert_eq!(code, 403, "the policy comes first");
    let (_, v) = h.glance(ALICE, M::GET, "/versions", None).await;
    assert!(!version_ids(&v).contains(&"v2.14".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_download_hits_clear_and_delete() {
    let h = Harness::start(with_cache).await;
    let (_, v) = h.glance(ALICE, M::GET, "/versions", None).await;
    assert!(version_ids(&v).contains(&"v2.14".to_string()), "{v}");

    // Admin only (Glance's cache_list, cache_image, cache_delete).
    let (code, e) = h.glance(ALICE, M::GET, "/v2/cache", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        e["message"],
        "You are not authorized to complete cache_list action."
    );
    let v = cache(&h).await;
    assert_eq!(v, json!({"cached_images": [], "queued_images": []}));

    // Unknown and not-active images cannot be queued.
    let (code, e) = h
        .glance(ADMIN, M::PUT, "/v2/cache/non-existing-image-id", None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(e["message"], "Image non-existing-image-id not found.");
    let queued = create(&h, "queued").await;
    let (code, e) = h
        .glance(ADMIN, M::PUT, &format!("/v2/cache/{queued}"), None)
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        e["message"],
        "Only images with status active can be targeted for queueing"
    );
    let (code, _) = h
        .glance(ALICE, M::PUT, &format!("/v2/cache/{queued}"), None)
        .await;
    assert_eq!(code, 403);

    // Queued, then cached at once; nothing enters the log.
    let first = create(&h, "first").await;
    assert_eq!(h.image_upload(ALICE, &first, vec![7u8; 3000]).await, 204);
    let before = h.log_len().await;
    let (code, body) = h
        .glance(ADMIN, M::PUT, &format!("/v2/cache/{first}"), None)
        .await;
    assert_eq!((code, body), (202, Value::Null));
    let r = wait_cached(&h, &first).await;
    assert_eq!(r["hits"], 0);
    assert_eq!(r["size"], 3000);
    assert!(r["last_modified"].as_f64().unwrap() > 0.0);
    assert!(cache(&h).await["queued_images"]
        .as_array()
        .unwrap()
        .is_empty());
    // A download is a hit, served from the cache.
    assert_eq!(h.image_download(ALICE, &first).await.1, vec![7u8; 3000]);
    let r = row(&cache(&h).await, &first).unwrap();
    assert_eq!(r["hits"], 1);
    assert!(r["last_accessed"].as_f64() >= r["last_modified"].as_f64());
    assert_eq!(h.log_len().await, before, "the cache is not in the log");

    // A download of an image not cached fills the cache.
    let second = create(&h, "second").await;
    assert_eq!(h.image_upload(ALICE, &second, vec![8u8; 2000]).await, 204);
    assert_eq!(h.image_download(ALICE, &second).await.1, vec![8u8; 2000]);
    let r = wait_cached(&h, &second).await;
    assert_eq!(r["hits"], 0);

    // Clearing: a bad target is refused, `queue` leaves the cache, `cache` empties it.
    let (code, e) = clear(&h, Some("invalid")).await;
    assert_eq!(code, 400);
    assert_eq!(
        e["message"],
        "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string."
    );
    let (code, _) = clear(&h, Some("queue")).await;
    assert_eq!(code, 204);
    assert_eq!(
        cache(&h).await["cached_images"].as_array().unwrap().len(),
        2
    );
    let (code, _) = clear(&h, Some("cache")).await;
    assert_eq!(code, 204);
    assert_eq!(
        cache(&h).await,
        json!({"cached_images": [], "queued_images": []})
    );

    // One image out of the cache; an unknown one is a 404.
    let (code, _) = h
        .glance(ADMIN, M::PUT, &format!("/v2/cache/{first}"), None)
        .await;
    assert_eq!(code, 202);
    wait_cached(&h, &first).await;
    let (code, _) = h
        .glance(ADMIN, M::DELETE, &format!("/v2/cache/{first}"), None)
        .await;
    assert_eq!(code, 204);
    assert!(row(&cache(&h).await, &first).is_none());
    let unknown = uuid::Uuid::new_v4();
    let (code, e) = h
        .glance(ADMIN, M::DELETE, &format!("/v2/cache/{unknown}"), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(e["message"], format!("Image {unknown} not found."));

    // Deleting an image takes it out of the cache.
    let (code, _) = h
        .glance(ADMIN, M::PUT, &format!("/v2/cache/{second}"), None)
        .await;
    assert_eq!(code, 202);
    wait_cached(&h, &second).await;
    let (code, _) = h
        .glance(ALICE, M::DELETE, &format!("/v2/images/{second}"), None)
        .await;
    assert_eq!(code, 204);
    assert!(row(&cache(&h).await, &second).is_none());
    let (code, _) = clear(&h, None).await;
    assert_eq!(code, 204);
}

/// What is left queued (here: a queue marker a stop left behind) is cached by the
/// prefetcher; a queued image that no longer exists leaves the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefetcher_caches_what_is_queued() {
    let h = Harness::start(with_cache).await;
    let id = create(&h, "later").await;
    assert_eq!(h.image_upload(ALICE, &id, vec![5u8; 1000]).await, 204);
    let queue = h.dir.path().join("image-cache").join("queue");
    std::fs::File::create(queue.join(&id)).unwrap();
    let gone = uuid::Uuid::new_v4().to_string();
    std::fs::File::create(queue.join(&gone)).unwrap();
    let r = wait_cached(&h, &id).await;
    assert_eq!(r["size"], 1000);
    poll("the queue empties", || async {
        let queued = cache(&h).await["queued_images"].clone();
        queued.as_array().unwrap().is_empty().then_some(())
    })
    .await;
}

/// `--image-store-weights`: an image's stores highest weight first (Glance's
/// `sort_image_locations`), the weights in `/v2/info/stores/detail` (admin) only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_are_listed_by_weight() {
    let h = Harness::start(|o| {
        o.image_stores = vec!["fast".into(), "cheap".into(), "slow".into()];
        o.image_store_weights = [("fast".to_string(), 100), ("cheap".to_string(), 50)]
            .into_iter()
            .collect();
    })
    .await;
    let id = create(&h, "weighted").await;
    assert_eq!(h.image_stage(ALICE, &id, vec![1u8; 4096]).await, 204);
    let (code, _) = h
        .glance(
            ALICE,
            M::POST,
            &format!("/v2/images/{id}/import"),
            Some(json!({"method": {"name": "glance-direct"}, "all_stores": true})),
        )
        .await;
    assert_eq!(code, 202);
    // Active with the first store; done once no store is left importing.
    let img = h
        .wait_image(ALICE, &id, |i| {
            i["status"] == "active" && i["os_glance_importing_to_stores"] == ""
        })
        .await;
    // Unweighted "slow" (0) last; not alphabetical.
    assert_eq!(img["stores"], "fast,cheap,slow");
    assert_eq!(h.image_download(ALICE, &id).await.1, vec![1u8; 4096]);

    let (code, v) = h.glance(ALICE, M::GET, "/v2/info/stores", None).await;
    assert_eq!(code, 200);
    assert!(v["stores"][0].get("weight").is_none(), "{v}");
    let (code, _) = h
        .glance(ALICE, M::GET, "/v2/info/stores/detail", None)
        .await;
    assert_eq!(code, 403);
    let (code, v) = h
        .glance(ADMIN, M::GET, "/v2/info/stores/detail", None)
        .await;
    assert_eq!(code, 200, "{v}");
    let weights: Vec<(String, i64)> = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            // The read-only http store of image locations is listed last (several
            // stores), without properties.
            if s["id"] == "http" {
                assert_eq!(s["type"], "http");
                assert_eq!(s["properties"], json!({}));
            } else {
                assert_eq!(s["type"], "file");
                assert!(s["properties"]["data_dir"].is_string());
            }
            (
                s["id"].as_str().unwrap().to_string(),
                s["weight"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        vec![
            ("fast".to_string(), 100),
            ("cheap".to_string(), 50),
            ("slow".to_string(), 0),
            ("http".to_string(), 0)
        ]
    );
}
