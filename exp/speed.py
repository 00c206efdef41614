import onnxruntime as ort, numpy as np, time, onnx, collections, sys
M='.data/models/all-MiniLM-L6-v2-int8/model.onnx'
so=ort.SessionOptions(); so.intra_op_num_threads=1; so.optimized_model_filepath='/tmp/opt.onnx'
s=ort.InferenceSession(M,so)
m=onnx.load('/tmp/opt.onnx'); print(collections.Counter(n.op_type for n in m.graph.node).most_common(12))
for L in [32,128,256]:
    ids=np.random.randint(1000,20000,(1,L)).astype(np.int64); am=np.ones_like(ids)
    f={'input_ids':ids,'attention_mask':am,'token_type_ids':np.zeros_like(ids)}
    for _ in range(3): s.run(None,f)
    t=[]; 
    for _ in range(20):
        a=time.perf_counter(); s.run(None,f); t.append((time.perf_counter()-a)*1e3)
    print(L, 'p50 %.1f ms'%np.median(t), 'min %.1f'%min(t))
