from common import *
from sklearn.linear_model import Ridge, LogisticRegression
dev=load('dev_routing'); gold=load('train_gold'); tt=load('train_tasktype'); Ed=E('dev_routing'); Eg=E('train_gold'); Et=E('train_tasktype')
ar=[i for i,r in enumerate(dev) if r['source']=='arena-bench-v1']
A=[dev[i] for i in ar]
# domain classifier chat vs benchmark
X=np.vstack([Et,Eg]); y=np.r_[np.ones(len(Et)),np.zeros(len(Eg))]
m=LogisticRegression(C=1,max_iter=3000).fit(X,y); pc=m.predict_proba(Ed)[:,1]
for s in ['arena-bench-v1','routellm-gsm8k','routellm-mmlu']:
    idx=[i for i,r in enumerate(dev) if r['source']==s]; print(s, 'p_chat mean',pc[idx].mean(), 'min',pc[idx].min(),'max',pc[idx].max())
# within arena: tasktype probs
lab={'coding':0,'math':1,'reasoning':2,'creative_writing':3,'writing':3,'info-seek':4,'procedure':4,'role-play':6}
Xi=[];yi=[]
for i,r in enumerate(tt):
    for l in r['labels']:
        if l in lab: Xi.append(Et[i]); yi.append(lab[l]); break
m2=LogisticRegression(C=3,max_iter=3000).fit(np.array(Xi),yi); P=m2.predict_proba(Ed[ar])
names=['code','math','reason','write','qa','conv']
for k,c in enumerate(m2.classes_):
    report(A,P[:,k],f'arena p({names[c] if c<6 else c})')
report(A,P[:,list(m2.classes_).index(0)]+P[:,list(m2.classes_).index(1)]+P[:,list(m2.classes_).index(2)],'code+math+reason')
report(A,[len(r['prompt']) for r in A],'len')
