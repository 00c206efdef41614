# Exploration only: embeds every data file's prompts with the same int8 MiniLM + head/tail truncation the Rust code uses.
import json, sys, time, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
D='/work/shared/data/routing/'; M='.data/models/all-MiniLM-L6-v2-int8/'
tok=Tokenizer.from_file(M+'tokenizer.json'); tok.no_truncation(); tok.no_padding()
MAX=256
def trunc(text):
    enc=tok.encode(text, add_special_tokens=False)
    n=len(enc.ids); budget=MAX-2-4
    if n<=budget: return text
    tail=budget//4; head=budget-tail
    return text[:enc.offsets[head-1][1]]+' … '+text[enc.offsets[n-tail][0]:]
so=ort.SessionOptions(); so.intra_op_num_threads=int(sys.argv[1]) if len(sys.argv)>1 else 1
s=ort.InferenceSession(M+'model.onnx',so)
t2=Tokenizer.from_file(M+'tokenizer.json'); t2.enable_truncation(MAX); t2.enable_padding()
def emb(texts,bs=32):
    out=[]
    idx=np.argsort([len(t) for t in texts])
    res=[None]*len(texts)
    for i in range(0,len(texts),bs):
        b=[trunc(texts[j]) for j in idx[i:i+bs]]
        e=t2.encode_batch(b)
        ids=np.array([x.ids for x in e],dtype=np.int64); am=np.array([x.attention_mask for x in e],dtype=np.int64)
        h=s.run(None,{'input_ids':ids,'attention_mask':am,'token_type_ids':np.zeros_like(ids)})[0]
        v=(h*am[...,None]).sum(1)/am.sum(1,keepdims=True); v/=np.linalg.norm(v,axis=1,keepdims=True)
        for k,j in enumerate(idx[i:i+bs]): res[j]=v[k]
    return np.stack(res).astype(np.float32)
for f in ['dev_routing','train_gold','train_tasktype','train_routing']:
    rows=[json.loads(l) for l in open(D+f+'.jsonl')]
    t=time.time(); E=emb([r['prompt'] for r in rows]); np.save(f'exp/{f}.npy',E); print(f,E.shape,time.time()-t,flush=True)
